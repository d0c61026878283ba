#!/usr/bin/env bash
# Trains the demo model further on the GPU machine, continuing from the shipped weights (models/demo):
# synthesizes the speech there (espeak-ng and sox carried from here, train/gpu/make_carry.sh),
# computes the features, trains (bf16 autocast, large batches), averages the last snapshots and
# converts the result (train/finalize.py). Everything runs in the background (setsid), so it
# outlives one device call; `start` launches it and follows the log, `wait` follows it further and,
# once it has finished, puts the results under $OUT.
#
# From the development machine (device tool; one call may run 10 minutes, the machine stays warm
# for 30 s after a call, so make the `wait` call right after `start` returns):
#   train/gpu/make_carry.sh                       # .train-carry/1, .train-carry/2, ... (pieces)
#   run(command="bash train/gpu/run_train_gpu.sh receive", carry=[".train-carry/1"], timeout_s=60)
#   ... one receive call per piece but the last, each right after the one before (warm 30 s) ...
#   run(command="bash train/gpu/run_train_gpu.sh start", carry=[".train-carry/N"], timeout_s=600)
#   run(command="bash train/gpu/run_train_gpu.sh wait", timeout_s=600)
#   train/gpu/install_result.sh <files_at of the wait call>
#   .venv/bin/python train/accuracy_report.py --build build      # the C++ engine on the test sets, here
#
# Results under $OUT: demo.tar (models/demo: model.json, model.safetensors, train.yaml, units.txt,
# global_cmvn), runs.json (models/demo/training/runs.json: the run history),
# finalize.json, train.log, pipeline.log.
#
# Settings (environment): U2_TRAIN_UTTS training utterances to synthesize (30000, about 33 h),
# U2_TRAIN_MINUTES training time (9; the cosine schedule spans it), U2_MAX_FRAMES padded frames
# per batch (60000), U2_LR peak learning rate (1.5e-3), U2_JOBS synthesis/feature processes (all
# cores), U2_TRAIN_WORK work directory (train/work), U2_MODEL_OUT converted model (models/demo),
# U2_WAIT_S how long `start`/`wait` follow the log (570 s), U2_DEVICE (cuda), PYTHON (python3),
# U2_SILENCE_PAD share of utterances trained with long silence around them (0.15),
# U2_VOWEL_SHIFT share of training utterances synthesized with accent-like vowel shifts (0.3),
# U2_FREQ_WARP share of utterances trained with a vocal-tract-length warp of the spectrum (0.3),
# U2_INPUT_LAYER subsampling front (conv2d, 40 ms frames; conv2d2 gives 20 ms frames, and from the
# shipped conv2d checkpoint everything but the front carries over: give it more U2_TRAIN_MINUTES),
# U2_ENCODER_LINEAR_UNITS hidden width of the encoder's feed-forward modules (576, the shipped
# model's; a wider one starts from the shipped weights with the new units at zero output),
# U2_RECIPE training speech (mixed: several synthesizers, everyday and technical text, the
# augmentations of train/augment.py, as the real-speech runs train; espeak: the original recipe),
# U2_ENGINES the mixed recipe's synthesizer shares (espeak:0.3,flite:0.45,festival:0.25).
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
WORK=${U2_TRAIN_WORK:-$REPO/train/work}
MODEL_OUT=${U2_MODEL_OUT:-$REPO/models/demo}
NUM=${U2_TRAIN_UTTS:-30000}
TRAIN_MIN=${U2_TRAIN_MINUTES:-9}
MAX_FRAMES=${U2_MAX_FRAMES:-60000}
LR=${U2_LR:-1.5e-3}
JOBS=${U2_JOBS:-$(nproc)}
WAIT_S=${U2_WAIT_S:-570}
PY=${PYTHON:-python3}
DEVICE=${U2_DEVICE:-cuda}
SILENCE_PAD=${U2_SILENCE_PAD:-0.15}
VOWEL_SHIFT=${U2_VOWEL_SHIFT:-0.3}
FREQ_WARP=${U2_FREQ_WARP:-0.3}
INPUT_LAYER=${U2_INPUT_LAYER:-conv2d}
ENCODER_LINEAR_UNITS=${U2_ENCODER_LINEAR_UNITS:-576}
TOOLS=$WORK/u2train
PIECES=$WORK/carry-pieces
CARRY=${U2_CARRY_DIR:-.train-carry}  # where the device tool put the carried pieces
RECIPE=${U2_RECIPE:-mixed}
ENGINES=${U2_ENGINES:-espeak:0.3,flite:0.45,festival:0.25}
LOG=$WORK/pipeline.log
DONE=$WORK/pipeline.status   # written at the end: the pipeline's exit status
EXP=$WORK/exp_gpu

stage() { echo "== $(date -u +%T) $*"; }

pipeline() {
  set -e
  export PATH=$TOOLS/bin:$PATH PYTHONUNBUFFERED=1 U2_FESTIVAL_LIBDIR=$TOOLS/festival
  stage "tools"
  espeak-ng --version
  sox --version
  flite --version || true  # flite exits 1 after printing it
  if ! "$PY" -c "import G722" 2>/dev/null; then  # the mixed recipe's G.722 codec (PyPI g722)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$TOOLS/site" "$TOOLS"/wheels/*.whl
    export PYTHONPATH=$TOOLS/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c "import torch, torchaudio, numpy, yaml; print('torch', torch.__version__, 'torchaudio', torchaudio.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
  mkdir -p "$WORK/corpus"
  cp "$TOOLS"/corpus/*.txt "$WORK/corpus/"
  if [[ ! -e $WORK/data/.ready ]]; then
    stage "synthesize dev + $NUM training utterances ($JOBS processes)"
    "$PY" train/synth.py --split dev --corpus "$WORK/corpus" --out "$WORK/data" --jobs "$JOBS"
    "$PY" train/synth.py --split train --num "$NUM" --corpus "$WORK/corpus" --out "$WORK/data" --jobs "$JOBS" \
      --recipe "$RECIPE" --engines "$ENGINES" \
      --vowel-shift-prob "$VOWEL_SHIFT"
    stage "features"
    "$PY" train/feats.py --split dev --data "$WORK/data" --jobs "$JOBS"
    "$PY" train/feats.py --split train --data "$WORK/data" --jobs "$JOBS"
    touch "$WORK/data/.ready"
  fi
  mkdir -p "$EXP"
  local from=(--init models/demo)
  [[ -e $EXP/last.pt ]] && from=(--resume)
  stage "train ${from[*]} for $TRAIN_MIN min"
  "$PY" train/train.py --data "$WORK/data" --exp "$EXP" "${from[@]}" --device "$DEVICE" \
    --input-layer "$INPUT_LAYER" --encoder-linear-units "$ENCODER_LINEAR_UNITS" --max-frames "$MAX_FRAMES" --lr "$LR" --warmup 200 --schedule-minutes "$TRAIN_MIN" \
    --max-minutes "$TRAIN_MIN" --curriculum-frac 0 --silence-pad-prob "$SILENCE_PAD" \
    --freq-warp-prob "$FREQ_WARP" --seed 2027 --eval-minutes 1 --eval-utts 300 \
    --snapshot-minutes 0.5 --ckpt-minutes 2 --log-steps 50 2>&1 | tee "$EXP/train.log"
  stage "finalize"
  "$PY" train/finalize.py --exp "$EXP" --data "$WORK/data" --export "$WORK/export" --out "$MODEL_OUT" \
    --samples 0 --skip-eval --dev-utts 300 --threads 8
  stage "done"
}

follow() {  # print the log as it grows until the pipeline ends or WAIT_S passes
  local shown=0 t0=$SECONDS n
  while ((SECONDS - t0 < WAIT_S)); do
    if [[ -e $LOG ]]; then
      n=$(wc -l <"$LOG")
      ((n > shown)) && sed -n "$((shown + 1)),${n}p" "$LOG" | grep -v "^step .*[13579]50 epoch" || true
      shown=$n
    fi
    [[ -e $DONE ]] && break
    sleep 5
  done
  if [[ ! -e $DONE ]]; then
    echo "== still running after ${WAIT_S}s: call 'wait' again"
    return 0
  fi
  echo "== pipeline exit status $(cat "$DONE")"
  if [[ -n ${OUT:-} && $(cat "$DONE") == 0 ]]; then
    tar -C "$MODEL_OUT" -cf "$OUT/demo.tar" model.json model.safetensors train.yaml units.txt global_cmvn
    cp "$MODEL_OUT/training/runs.json" "$OUT/runs.json"
    cp "$WORK/export/finalize.json" "$EXP/train.log" "$LOG" "$OUT/"
    ls -la "$OUT"
  elif [[ -n ${OUT:-} ]]; then
    cp "$LOG" "$OUT/"
  fi
}

case ${1:-} in
  receive)  # keep the carried pieces of the tool package under $WORK, where later calls find them
    mkdir -p "$PIECES"
    found=0
    for piece in "$CARRY"/*/u2train.tar.xz.[0-9][0-9]; do
      [[ -e $piece ]] || continue
      cp "$piece" "$(dirname "$piece")/manifest" "$PIECES/"
      found=$((found + 1))
    done
    ((found > 0)) || { echo "no $CARRY/N/u2train.tar.xz.NN carried"; exit 1; }
    echo "received $(ls "$PIECES"/u2train.tar.xz.* | wc -l) of $(cut -d' ' -f1 "$PIECES/manifest") pieces"
    ;;
  start)
    mkdir -p "$WORK"
    rm -f "$DONE"
    if [[ ! -x $TOOLS/bin/espeak-ng ]]; then
      bash "$0" receive 2>/dev/null || true  # the last piece may come with this call
      [[ -s $PIECES/manifest ]] || { echo "no pieces received: carry .train-carry/N with 'receive'"; exit 1; }
      read -r count sum <"$PIECES/manifest"
      have=$(ls "$PIECES"/u2train.tar.xz.[0-9][0-9] 2>/dev/null | wc -l)
      ((have == count)) || { echo "$have of $count pieces received: carry the others with 'receive'"; exit 1; }
      cat "$PIECES"/u2train.tar.xz.[0-9][0-9] >"$WORK/u2train.tar.xz"
      [[ $(sha256sum <"$WORK/u2train.tar.xz" | cut -d' ' -f1) == "$sum" ]] ||
        { echo "the joined package fails its checksum: carry the pieces again"; exit 1; }
      tar -C "$WORK" -xJf "$WORK/u2train.tar.xz" && rm -f "$WORK/u2train.tar.xz"
    fi
    setsid nohup bash -c "bash '$0' pipeline; echo \$? > '$DONE'" >"$LOG" 2>&1 </dev/null &
    follow
    ;;
  wait) follow ;;
  pipeline) pipeline ;;
  *) echo "usage: $0 receive|start|wait" >&2; exit 2 ;;
esac
