#!/usr/bin/env bash
# ONE command for the GPU machine: find (or build) the GPU binaries, run the GPU tests, make the
# benchmark models, benchmark u2serve's CUDA backend (fp32 GEMM, and fp16-operand GEMM) and the
# PyTorch fp16-autocast peer offline, then the streaming benchmark (how many real-time streams at
# p99 chunk latency <= 200 ms, u2gpustream and torch_stream_peer.py), write everything under $OUT
# and print the short tables last.
# docs/gpu.md says how to call it through the device tool.
#
# Usage: bench/gpu/run_gpu.sh [--dry-run] [--quick] [--skip-tests] [--skip-bench] [--no-torch]
#                             [--no-sanitizer] [--racecheck] [--build-dir DIR] [--batches 1,8,64,256]
#                             [--seconds 10] [--skip-streaming] [--streaming-only]
#                             [--streams 100,500,1000,2000,4000,8000] [--stream-math fp16]
#   (whole run bounded by U2_GPU_DEADLINE_S, default 550 s; the streaming section keeps
#    U2_GPU_STREAM_S, default 210 s, of it for itself: the offline benchmark stops in time)
#   --dry-run   on a machine without a GPU: checks the script's logic with the CPU backend (binaries
#               load and list their tests, models are made, u2gpubench --device cpu and the torch
#               peer on the CPU run on tiny batches, the table is printed). No GPU is touched.
#   --quick     fewer batch sizes (1,16,256) and shorter timing.
#   --skip-bench      no offline benchmark (the streaming one still runs unless --skip-streaming).
#   --streaming-only  = --skip-tests --skip-bench: only the streaming section (a second call).
# Binaries, first found wins: .gpu-carry/u2gpu.tar.xz (bench/gpu/make_carry.sh), --build-dir (default
# build-gpu), else a build here (needs the Debian -dev packages of scripts/setup.sh).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DRY_RUN=0 QUICK=0 SKIP_TESTS=0 SKIP_BENCH=0 NO_TORCH=0 NO_SANITIZER=0 RACECHECK=0 SKIP_STREAMING=0
BUILD_DIR="" BATCHES="" SECONDS_PER_CLIP=10 STREAMS="" STREAM_MATH=fp16
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --quick) QUICK=1 ;;
    --skip-tests) SKIP_TESTS=1 ;;
    --skip-bench) SKIP_BENCH=1 ;;
    --no-torch) NO_TORCH=1 ;;
    --no-sanitizer) NO_SANITIZER=1 ;;
    --racecheck) RACECHECK=1 ;;
    --build-dir) BUILD_DIR=$2; shift ;;
    --batches) BATCHES=$2; shift ;;
    --seconds) SECONDS_PER_CLIP=$2; shift ;;
    --skip-streaming) SKIP_STREAMING=1 ;;
    --streaming-only) SKIP_TESTS=1; SKIP_BENCH=1 ;;
    --streams) STREAMS=$2; shift ;;
    --stream-math) STREAM_MATH=$2; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "run_gpu: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# $OUT is set by the device tool; elsewhere results go to /tmp.
if [[ -z ${OUT:-} ]]; then OUT=$([[ $DRY_RUN == 1 ]] && echo /tmp/u2gpu-dryrun-out || echo /tmp/u2gpu-out); fi
mkdir -p "$OUT"
: >"$OUT/bench.jsonl"

main() {
  set -euo pipefail
say() { printf '\n== %s\n' "$*"; }
die() { printf '\nrun_gpu: ERROR: %s\n' "$*" >&2; exit 1; }  # exits main's subshell
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START ))s; }
# The device tool stops a command at 600 s: every stage gets at most what is left of DEADLINE.
DEADLINE=${U2_GPU_DEADLINE_S:-550}
budget() {  # budget MAX [RESERVE] -> seconds this stage may take, leaving RESERVE s (0 = skip it)
  local left=$(( DEADLINE - ${2:-0} - ($(date +%s) - START) ))
  (( left < 20 )) && { echo 0; return; }
  echo $(( left < $1 ? left : $1 ))
}
# What the streaming section keeps for itself: the offline benchmark stages stop before it.
STREAM_RESERVE=0
[[ $SKIP_STREAMING == 0 ]] && STREAM_RESERVE=${U2_GPU_STREAM_S:-210}

if [[ $DRY_RUN == 1 ]]; then
  DEVICE=cpu
  BATCHES=${BATCHES:-1,2}
  SECONDS_PER_CLIP=2
  MIN_TIME=0.1 MAX_REPS=3
else
  DEVICE=cuda
  if [[ $QUICK == 1 ]]; then BATCHES=${BATCHES:-1,16,256}; MIN_TIME=0.3 MAX_REPS=5
  else BATCHES=${BATCHES:-1,8,64,256}; MIN_TIME=0.5 MAX_REPS=10; fi
fi
say "run_gpu: mode=$([[ $DRY_RUN == 1 ]] && echo dry-run || echo gpu) device=$DEVICE batches=$BATCHES clip=${SECONDS_PER_CLIP}s out=$OUT"

# ---------------------------------------------------------------- environment
say "environment"
{
  echo "date: $(date -u)"; echo "host: $(uname -a)"; echo "repo: $REPO"
  echo "cpus: $(nproc)"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
  else echo "nvidia-smi: not found"; fi
  command -v nvcc >/dev/null && nvcc --version | tail -2 || echo "nvcc: not on PATH"
} | tee "$OUT/env.txt"
if [[ $DRY_RUN == 0 ]] && ! command -v nvidia-smi >/dev/null && [[ ! -e /dev/nvidia0 ]]; then
  die "no NVIDIA GPU visible (no nvidia-smi, no /dev/nvidia0); on a machine without one use --dry-run"
fi

# ---------------------------------------------------------------- binaries
BIN="" LIBS=""
CARRY=$REPO/.gpu-carry/u2gpu.tar.xz
if [[ -f $CARRY && $DRY_RUN == 0 ]]; then
  say "unpacking the carried build $CARRY"
  rm -rf /tmp/u2gpu && tar -C /tmp -xJf "$CARRY"
  BIN=/tmp/u2gpu/bin LIBS=/tmp/u2gpu/lib
  echo "built from commit $(cat /tmp/u2gpu/COMMIT 2>/dev/null || echo '?'); repo here at $(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo '?')"
else
  BUILD_DIR=${BUILD_DIR:-$([[ $DRY_RUN == 1 ]] && echo build-cuda || echo build-gpu)}
  [[ $BUILD_DIR = /* ]] || BUILD_DIR=$REPO/$BUILD_DIR
  GPU_TEST_NAMES=()
  for f in "$REPO"/tests/gpu/test_*.cc; do GPU_TEST_NAMES+=("$(basename "$f" .cc)"); done
  missing=0
  for t in "${GPU_TEST_NAMES[@]}"; do [[ -x $BUILD_DIR/tests/gpu/$t ]] || missing=1; done
  [[ -x $BUILD_DIR/u2gpubench && -x $BUILD_DIR/bench/gpu/u2gpustream ]] || missing=1
  if [[ $missing == 1 ]]; then
    say "no carried build: building in $BUILD_DIR"
    command -v cmake >/dev/null || die "cmake not found and no carried build: run bench/gpu/make_carry.sh where the project builds and carry .gpu-carry"
    cmake -S "$REPO" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DU2_WITH_CUDA=ON -DU2_NATIVE=OFF \
      -DCMAKE_CUDA_ARCHITECTURES=90 ||
      die "configure failed (missing packages? see above). Build a bundle with bench/gpu/make_carry.sh and carry .gpu-carry"
    cmake --build "$BUILD_DIR" -j"$(nproc)" --target "${GPU_TEST_NAMES[@]}" u2gpubench u2gpustream ||
      die "build failed (see above)"
  fi
  mkdir -p /tmp/u2gpu-bin
  for t in "${GPU_TEST_NAMES[@]}"; do ln -sf "$BUILD_DIR/tests/gpu/$t" /tmp/u2gpu-bin/; done
  ln -sf "$BUILD_DIR/u2gpubench" "$BUILD_DIR/bench/gpu/u2gpustream" /tmp/u2gpu-bin/
  BIN=/tmp/u2gpu-bin
fi

# CUDA libraries: the toolkit's, else the pip wheels' (nvidia-cublas, nvidia-cufft, ...).
CUDA_LIBS=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
  [[ -e $d/libcublas.so.13 ]] && CUDA_LIBS=$d && break
done
if [[ -z $CUDA_LIBS ]] && command -v python3 >/dev/null; then
  CUDA_LIBS=$(python3 - <<'PY' 2>/dev/null || true
import glob, os, site
dirs = []
for sp in site.getsitepackages():
    dirs += sorted(set(os.path.dirname(p) for p in glob.glob(os.path.join(sp, "nvidia", "**", "lib*.so.1[0-9]*"), recursive=True)))
print(":".join(dirs))
PY
)
fi
export LD_LIBRARY_PATH=${LIBS:+$LIBS:}${CUDA_LIBS:+$CUDA_LIBS:}${LD_LIBRARY_PATH:-}
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
if ! "$BIN/test_gpu_ops" --gtest_list_tests >/dev/null 2>&1; then
  if [[ -d /tmp/u2gpu/lib-cxx ]]; then
    export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:/tmp/u2gpu/lib-cxx
    echo "using the carried libstdc++ (lib-cxx)"
  fi
fi
if ! "$BIN/test_gpu_ops" --gtest_list_tests >/dev/null 2>&1; then
  ldd "$BIN/test_gpu_ops" || true
  die "the GPU test binary does not load (missing shared libraries above)"
fi
echo "binaries load: $(ls "$BIN" | tr '\n' ' ')"

# The tests find tests/fixtures under the path compiled into them: point it at this checkout.
FIXDIR=$(grep -a -o -m1 '/[[:print:]]*/tests/fixtures' "$BIN/test_gpu_model" | head -1 || true)
if [[ -n $FIXDIR && ! -d $FIXDIR ]]; then
  ROOT_COMPILED=${FIXDIR%/tests/fixtures}
  mkdir -p "$(dirname "$ROOT_COMPILED")" && ln -sfn "$REPO" "$ROOT_COMPILED"
  echo "fixtures: linked $ROOT_COMPILED -> $REPO"
fi

# ---------------------------------------------------------------- tests
TEST_SUMMARY=()
if [[ $SKIP_TESTS == 0 ]]; then
  say "GPU tests ($(elapsed))"
  : >"$OUT/tests.log"
  # Every GPU test binary there is (tests/gpu/test_*.cc), the kernel tests first.
  GPU_TESTS=()
  for t in test_gpu_ops test_gpu_fbank test_gpu_model; do [[ -x $BIN/$t ]] && GPU_TESTS+=("$t"); done
  for f in "$BIN"/test_gpu_*; do
    t=$(basename "$f")
    [[ " ${GPU_TESTS[*]} " == *" $t "* ]] || GPU_TESTS+=("$t")
  done
  for f in "$REPO"/tests/gpu/test_*.cc; do  # a test in the checkout but not in the bundle: say so
    t=$(basename "$f" .cc)
    [[ -x $BIN/$t ]] || TEST_SUMMARY+=("$t: FAIL (not in the bundle/build: run bench/gpu/make_carry.sh again)")
  done
  for t in "${GPU_TESTS[@]}"; do
    if [[ $DRY_RUN == 1 ]]; then
      n=$("$BIN/$t" --gtest_list_tests | grep -c '^  ' || true)
      TEST_SUMMARY+=("$t: $n tests listed (dry run: not run, no GPU)")
      continue
    fi
    b=$(budget 240)
    if [[ $b == 0 ]]; then TEST_SUMMARY+=("$t: NOT RUN (out of time)"); continue; fi
    set +e
    timeout "$b" "$BIN/$t" --gtest_color=no 2>&1 | tee -a "$OUT/tests.log"
    rc=${PIPESTATUS[0]}
    set -e
    TEST_SUMMARY+=("$t: $([[ $rc == 0 ]] && echo PASS || echo "FAIL (rc $rc)")")
  done
fi

# ---------------------------------------------------------------- compute-sanitizer
# memcheck (out-of-bounds / misaligned accesses) and racecheck (shared-memory races) on the kernels'
# own tests, small shapes; each bounded to 100 s.
if [[ $SKIP_TESTS == 0 && $DRY_RUN == 0 && $NO_SANITIZER == 0 ]]; then
  SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
  if [[ -n $SAN ]]; then
    FILTER='GpuOps.Attention*:GpuOps.Depthwise*:GpuOps.Conv2d*:GpuOps.CmvnPositional*:GpuOps.LayerNorm*:GpuOps.LogSoftmax*'
    TOOLS=(memcheck)
    [[ $RACECHECK == 1 ]] && TOOLS+=(racecheck)
    for tool in "${TOOLS[@]}"; do
      say "compute-sanitizer $tool ($(elapsed))"
      b=$(budget 100)
      if [[ $b == 0 ]]; then TEST_SUMMARY+=("compute-sanitizer $tool: not run (out of time)"); continue; fi
      set +e
      timeout "$b" "$SAN" --tool "$tool" --error-exitcode 9 "$BIN/test_gpu_ops" --gtest_filter="$FILTER" \
        --gtest_color=no 2>&1 | tail -25 | tee -a "$OUT/tests.log"
      rc=${PIPESTATUS[0]}
      set -e
      case $rc in
        0) TEST_SUMMARY+=("compute-sanitizer $tool: clean") ;;
        124) TEST_SUMMARY+=("compute-sanitizer $tool: timed out (not a failure)") ;;
        *) TEST_SUMMARY+=("compute-sanitizer $tool: FAIL (rc $rc)") ;;
      esac
    done
  else
    TEST_SUMMARY+=("compute-sanitizer: not found, skipped")
  fi
fi

# ---------------------------------------------------------------- benchmark
PYTHON=${PYTHON:-python3}
[[ $DRY_RUN == 1 && -x $REPO/.venv/bin/python ]] && PYTHON=$REPO/.venv/bin/python
MODELS_DIR=/tmp/u2gpu-models
TORCH_PY=$PYTHON
[[ $DRY_RUN == 1 ]] && TORCH_PY=/usr/bin/python3
if [[ $SKIP_BENCH == 0 ]]; then
  say "benchmark models ($(elapsed))"
  for m in aishell2_u2pp wenetspeech; do
    [[ $DRY_RUN == 1 && $m == wenetspeech ]] && continue  # one model is enough to check the logic
    if [[ ! -f $MODELS_DIR/$m/model.safetensors ]]; then
      "$PYTHON" "$REPO/bench/gpu/make_random_model.py" "$REPO/bench/gpu/models/$m.json" "$MODELS_DIR/$m" ||
        die "could not make model $m (needs numpy and safetensors for $PYTHON)"
    fi
  done
  MATHS=(fp32 fp16)
  [[ $DRY_RUN == 1 ]] && MATHS=(fp32)
  for m in aishell2_u2pp wenetspeech; do
    [[ -d $MODELS_DIR/$m ]] || continue
    for math in "${MATHS[@]}"; do
      say "u2serve $m gemm=$math ($(elapsed))"
      b=$(budget 150 "$STREAM_RESERVE")
      [[ $b == 0 ]] && { echo "run_gpu: out of time: $m $math skipped"; continue; }
      timeout "$b" "$BIN/u2gpubench" --model-dir "$MODELS_DIR/$m" --label "$m" --device "$DEVICE" \
        --gemm-math "$math" --batches "$BATCHES" --seconds "$SECONDS_PER_CLIP" --modes encoder,full \
        --min-time "$MIN_TIME" --max-reps "$MAX_REPS" --json "$OUT/bench.jsonl" ||
        echo "run_gpu: u2gpubench $m $math stopped early (rc $?); continuing"
    done
  done
  if [[ $NO_TORCH == 0 ]]; then
    TDEV=$DEVICE TDTYPE=fp16
    [[ $DRY_RUN == 1 ]] && TDTYPE=fp32
    if "$TORCH_PY" -c "import torch, torchaudio, sys; sys.exit(0 if ('$TDEV' == 'cpu' or torch.cuda.is_available()) else 1)" 2>/dev/null; then
      [[ -f $REPO/bench/bench_common.py ]] || echo "run_gpu: bench/bench_common.py missing: PyTorch peer skipped"
      for m in aishell2_u2pp wenetspeech; do
        [[ -f $REPO/bench/bench_common.py && -d $MODELS_DIR/$m ]] || continue
        say "PyTorch peer $m $TDTYPE ($(elapsed))"
        b=$(budget 120 "$STREAM_RESERVE")
        [[ $b == 0 ]] && { echo "run_gpu: out of time: PyTorch peer $m skipped"; continue; }
        timeout "$b" "$TORCH_PY" "$REPO/bench/gpu/torch_peer.py" --model "$m" --device "$TDEV" --dtype "$TDTYPE" \
          --batches "$BATCHES" --seconds "$SECONDS_PER_CLIP" --min-time "$MIN_TIME" --max-reps "$MAX_REPS" \
          --json "$OUT/bench.jsonl" || echo "run_gpu: torch peer $m stopped early (rc $?); continuing"
      done
    else
      echo "run_gpu: PyTorch with CUDA (and torchaudio) is not available to $TORCH_PY: PyTorch peer skipped"
    fi
  fi
fi

# ---------------------------------------------------------------- streaming
# u2gpustream: N streams paced in real time (640 ms of audio per stream per 640 ms tick, chunk 16,
# 4 left chunks), DecodeStreams over worker threads; the largest N with p99 chunk latency <= 200 ms.
# The model: the AISHELL-2 U2++ size with the CTC blank biased (make_random_model.py
# --ctc-blank-bias 3) so that the prefix search and rescoring see ~5 tokens/s, as with a trained
# model (flat random posteriors give ~12). Stages, in order of importance:
#   1. staggered arrivals (clients at random phases: what a server sees), sweep + bisection;
#   2. the same with utterances of 10 s ending in attention rescoring (and new streams);
#   3. aligned arrivals (every stream's chunk at the tick's start: the burst worst case);
#   4. the PyTorch peer (batched forward_chunk + CTC top-k, aligned, no search), sweep + bisection.
if [[ $SKIP_STREAMING == 0 ]]; then
  say "streaming benchmark ($(elapsed))"
  SM=aishell2_u2pp_stream
  if [[ ! -f $MODELS_DIR/$SM/model.safetensors ]]; then
    "$PYTHON" "$REPO/bench/gpu/make_random_model.py" "$REPO/bench/gpu/models/aishell2_u2pp.json" "$MODELS_DIR/$SM" \
      --ctc-blank-bias 3 || die "could not make model $SM (needs numpy and safetensors for $PYTHON)"
  fi
  if [[ $DRY_RUN == 1 ]]; then
    S_STREAMS=${STREAMS:-1,2} S_WORKERS=2 S_BATCH=4 S_TICKS=3 S_WARM=5 S_MATH=fp32 S_EXTRA=(--threads 2)
    S_FIXED=2 S_UTT=2 P_DTYPE=fp32
  else
    S_STREAMS=${STREAMS:-100,500,1000,2000,4000,8000} S_WORKERS=${U2_STREAM_WORKERS:-8}
    S_BATCH=${U2_STREAM_MAX_BATCH:-512} S_TICKS=6 S_WARM=5 S_MATH=$STREAM_MATH S_EXTRA=() S_FIXED=1000 S_UTT=10
    P_DTYPE=fp16
  fi
  stream_bench() {  # stream_bench MAX_SECONDS ARGS... : one u2gpustream run within its budget
    local b
    b=$(budget "$1"); shift
    if [[ $b == 0 ]]; then echo "run_gpu: out of time: u2gpustream $* skipped"; return 0; fi
    timeout "$b" "$BIN/u2gpustream" --model-dir "$MODELS_DIR/$SM" --label aishell2_u2pp --device "$DEVICE" \
      --gemm-math "$S_MATH" --chunk 16 --left 4 --max-batch "$S_BATCH" --workers "$S_WORKERS" \
      --ticks "$S_TICKS" --warmup-ticks "$S_WARM" --time-limit $(( b > 40 ? b - 25 : b / 2 )) \
      --json "$OUT/bench.jsonl" "${S_EXTRA[@]}" "$@" >>"$OUT/stream.log" ||
      echo "run_gpu: u2gpustream stopped early (rc $?); continuing"
  }
  : >"$OUT/stream.log"
  say "u2gpustream staggered, sweep $S_STREAMS + search, gemm=$S_MATH ($(elapsed))"
  stream_bench 100 --arrival staggered --streams "$S_STREAMS" --search
  # The largest real-time N just found (else 1000): where the variants are measured.
  MAXN=$("$PYTHON" - "$OUT/bench.jsonl" <<'PY' 2>/dev/null || true
import json, sys
best = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("kind") == "stream" and r.get("arrival") == "staggered" and not r.get("utterance_s") \
            and not r["backend"].startswith("pytorch") and r.get("realtime"):
        best = max(best, r["streams"])
print(best)
PY
)
  [[ -z $MAXN || $MAXN == 0 ]] && MAXN=$S_FIXED
  V_STREAMS=$S_FIXED
  [[ $MAXN != "$S_FIXED" ]] && V_STREAMS=$S_FIXED,$MAXN
  say "u2gpustream staggered, ${S_UTT}s utterances with rescoring, streams $V_STREAMS ($(elapsed))"
  stream_bench 40 --arrival staggered --streams "$V_STREAMS" --utterance-s "$S_UTT"
  say "u2gpustream aligned, streams $V_STREAMS ($(elapsed))"
  stream_bench 25 --arrival aligned --streams "$V_STREAMS"
  if [[ $NO_TORCH == 0 ]]; then
    say "PyTorch streaming peer $P_DTYPE, sweep $S_STREAMS + search ($(elapsed))"
    b=$(budget 45)
    if [[ $b == 0 ]]; then
      echo "run_gpu: out of time: PyTorch streaming peer skipped"
    elif "$TORCH_PY" -c "import torch, sys; sys.exit(0 if ('$DEVICE' == 'cpu' or torch.cuda.is_available()) else 1)" 2>/dev/null; then
      timeout "$b" "$TORCH_PY" "$REPO/bench/gpu/torch_stream_peer.py" --model aishell2_u2pp --model-dir "$MODELS_DIR/$SM" \
        --device "$DEVICE" --dtype "$P_DTYPE" --streams "$S_STREAMS" --search --check --max-batch "$S_BATCH" \
        --ticks $(( DRY_RUN == 1 ? 2 : 6 )) --warmup-ticks 5 --time-limit $(( b > 40 ? b - 20 : b / 2 )) \
        --json "$OUT/bench.jsonl" >>"$OUT/stream.log" || echo "run_gpu: torch streaming peer stopped early (rc $?); continuing"
    else
      echo "run_gpu: PyTorch with CUDA is not available to $TORCH_PY: streaming peer skipped"
    fi
  fi
fi

# ---------------------------------------------------------------- summary (printed last)
say "summary ($(elapsed))"
for s in "${TEST_SUMMARY[@]}"; do echo "  $s"; done
if [[ -s $OUT/bench.jsonl ]]; then
  "$PYTHON" "$REPO/bench/gpu/summarize.py" "$OUT/bench.jsonl" | tee "$OUT/summary.md"
fi
echo "results: $OUT (run_gpu.log, env.txt, tests.log, bench.jsonl, stream.log, summary.md)"
for s in "${TEST_SUMMARY[@]}"; do [[ $s == *FAIL* ]] && return 1; done
return 0
}

# The whole run, logged; the exit status is main's (1 if a GPU test failed).
set +e
main 2>&1 | tee "$OUT/run_gpu.log"
rc=${PIPESTATUS[0]}
exit "$rc"
