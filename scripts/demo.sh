#!/usr/bin/env bash
# The main job: installs what is missing and builds (the server and its client only: see
# scripts/setup.sh --server and scripts/build.sh --server), then starts the u2serve server on the
# bundled demo model and transcribes the bundled samples and a few real recordings (built at
# set-up time) through it (gRPC, Triton protocol), printing each transcript and the CER against
# the reference text.
# Ports: U2_HTTP_PORT (8000), U2_GRPC_PORT (8001), U2_METRICS_PORT (8002).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --server
./scripts/build.sh --server
BUILD_DIR=${U2_BUILD_DIR:-build}
MODEL=${U2_DEMO_MODEL:-models/demo}
HTTP_PORT=${U2_HTTP_PORT:-8000}
GRPC_PORT=${U2_GRPC_PORT:-8001}
METRICS_PORT=${U2_METRICS_PORT:-8002}
LOG="$BUILD_DIR/u2serve-demo.log"

echo "== starting u2serve on $MODEL (log: $LOG) =="
"$BUILD_DIR/apps/u2serve" --model-dir "$MODEL" --bind 127.0.0.1 --http-port "$HTTP_PORT" \
  --grpc-port "$GRPC_PORT" --metrics-port "$METRICS_PORT" --threads 2 --workers 1 >"$LOG" 2>&1 &
SERVER_PID=$!
stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
}
trap stop_server EXIT

echo "== transcribing tests/data/samples through it (u2client, gRPC :$GRPC_PORT) =="
if ! "$BUILD_DIR/apps/u2client" --url "127.0.0.1:$GRPC_PORT" --wait 60 \
    --wav-scp tests/data/samples/wav.scp --text tests/data/samples/text; then
  echo "u2client failed; the server log says:" >&2
  tail -n 20 "$LOG" >&2
  exit 1
fi
REAL=data/real_speech/asterisk_en/test
if [ -f "$REAL/wav.scp" ]; then
  # Six real recordings (one professional voice, never trained on), every 45th of the test half.
  DEMO_REAL="$BUILD_DIR/demo_real"
  mkdir -p "$DEMO_REAL"
  awk -v dir="$(cd "$REAL" && pwd)" 'NR % 45 == 1 { print $1, dir "/" $2 }' "$REAL/wav.scp" > "$DEMO_REAL/wav.scp"
  awk 'NR % 45 == 1' "$REAL/text" > "$DEMO_REAL/text"
  echo
  echo "== transcribing real human speech (Asterisk prompts, $REAL) through it =="
  if ! "$BUILD_DIR/apps/u2client" --url "127.0.0.1:$GRPC_PORT" --wav-scp "$DEMO_REAL/wav.scp" \
      --text "$DEMO_REAL/text"; then
    echo "u2client failed on the real clips; the server log says:" >&2
    tail -n 20 "$LOG" >&2
    exit 1
  fi
  echo "(references: $DEMO_REAL/text; docs/accuracy.md has the model's CER on all of them)"
else
  echo "no real-speech set at $REAL (scripts/setup.sh builds it with tools/fetch_real_speech.py)" >&2
fi
echo
echo "Server metrics: curl 127.0.0.1:$METRICS_PORT/metrics (while it runs)."
echo "To keep a server running: $BUILD_DIR/apps/u2serve --model-dir $MODEL"
