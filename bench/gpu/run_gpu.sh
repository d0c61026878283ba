#!/usr/bin/env bash
# ONE command for the GPU machine: find (or build) the GPU binaries, run the GPU tests, make the
# benchmark models, benchmark u2serve's CUDA backend (fp32 GEMM, and fp16-operand GEMM) and the
# PyTorch fp16-autocast peer, write everything under $OUT and print a short table last.
# docs/gpu.md says how to call it through the device tool.
#
# Usage: bench/gpu/run_gpu.sh [--dry-run] [--quick] [--skip-tests] [--skip-bench] [--no-torch]
#                             [--no-sanitizer] [--racecheck] [--build-dir DIR] [--batches 1,8,64,256]
#                             [--seconds 10]   (whole run bounded by U2_GPU_DEADLINE_S, default 550 s)
#   --dry-run   on a machine without a GPU: checks the script's logic with the CPU backend (binaries
#               load and list their tests, models are made, u2gpubench --device cpu and the torch
#               peer on the CPU run on tiny batches, the table is printed). No GPU is touched.
#   --quick     fewer batch sizes (1,16,256) and shorter timing.
# Binaries, first found wins: .gpu-carry/u2gpu.tar.xz (bench/gpu/make_carry.sh), --build-dir (default
# build-gpu), else a build here (needs the Debian -dev packages of scripts/setup.sh).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DRY_RUN=0 QUICK=0 SKIP_TESTS=0 SKIP_BENCH=0 NO_TORCH=0 NO_SANITIZER=0 RACECHECK=0
BUILD_DIR="" BATCHES="" SECONDS_PER_CLIP=10
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
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
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
budget() {  # budget MAX -> seconds this stage may take (0 = skip it)
  local left=$(( DEADLINE - ($(date +%s) - START) ))
  (( left < 20 )) && { echo 0; return; }
  echo $(( left < $1 ? left : $1 ))
}

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
  if [[ ! -x $BUILD_DIR/tests/gpu/test_gpu_ops || ! -x $BUILD_DIR/u2gpubench ]]; then
    say "no carried build: building in $BUILD_DIR"
    command -v cmake >/dev/null || die "cmake not found and no carried build: run bench/gpu/make_carry.sh where the project builds and carry .gpu-carry"
    cmake -S "$REPO" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DU2_WITH_CUDA=ON -DU2_NATIVE=OFF \
      -DCMAKE_CUDA_ARCHITECTURES=90 ||
      die "configure failed (missing packages? see above). Build a bundle with bench/gpu/make_carry.sh and carry .gpu-carry"
    cmake --build "$BUILD_DIR" -j"$(nproc)" --target test_gpu_ops test_gpu_model test_gpu_fbank u2gpubench ||
      die "build failed (see above)"
  fi
  mkdir -p /tmp/u2gpu-bin
  for b in tests/gpu/test_gpu_ops tests/gpu/test_gpu_model tests/gpu/test_gpu_fbank u2gpubench; do
    ln -sf "$BUILD_DIR/$b" /tmp/u2gpu-bin/
  done
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
  for t in test_gpu_ops test_gpu_fbank test_gpu_model; do
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
if [[ $SKIP_BENCH == 0 ]]; then
  say "benchmark models ($(elapsed))"
  MODELS_DIR=/tmp/u2gpu-models
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
      b=$(budget 150)
      [[ $b == 0 ]] && { echo "run_gpu: out of time: $m $math skipped"; continue; }
      timeout "$b" "$BIN/u2gpubench" --model-dir "$MODELS_DIR/$m" --label "$m" --device "$DEVICE" \
        --gemm-math "$math" --batches "$BATCHES" --seconds "$SECONDS_PER_CLIP" --modes encoder,full \
        --min-time "$MIN_TIME" --max-reps "$MAX_REPS" --json "$OUT/bench.jsonl" ||
        echo "run_gpu: u2gpubench $m $math stopped early (rc $?); continuing"
    done
  done
  if [[ $NO_TORCH == 0 ]]; then
    TORCH_PY=$PYTHON
    [[ $DRY_RUN == 1 ]] && TORCH_PY=/usr/bin/python3
    TDEV=$DEVICE TDTYPE=fp16
    [[ $DRY_RUN == 1 ]] && TDTYPE=fp32
    if "$TORCH_PY" -c "import torch, torchaudio, sys; sys.exit(0 if ('$TDEV' == 'cpu' or torch.cuda.is_available()) else 1)" 2>/dev/null; then
      [[ -f $REPO/bench/bench_common.py ]] || echo "run_gpu: bench/bench_common.py missing: PyTorch peer skipped"
      for m in aishell2_u2pp wenetspeech; do
        [[ -f $REPO/bench/bench_common.py && -d $MODELS_DIR/$m ]] || continue
        say "PyTorch peer $m $TDTYPE ($(elapsed))"
        b=$(budget 120)
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

# ---------------------------------------------------------------- summary (printed last)
say "summary ($(elapsed))"
for s in "${TEST_SUMMARY[@]}"; do echo "  $s"; done
if [[ -s $OUT/bench.jsonl ]]; then
  "$PYTHON" "$REPO/bench/gpu/summarize.py" "$OUT/bench.jsonl" | tee "$OUT/summary.md"
fi
echo "results: $OUT (run_gpu.log, env.txt, tests.log, bench.jsonl, summary.md)"
for s in "${TEST_SUMMARY[@]}"; do [[ $s == *FAIL* ]] && return 1; done
return 0
}

# The whole run, logged; the exit status is main's (1 if a GPU test failed).
set +e
main 2>&1 | tee "$OUT/run_gpu.log"
rc=${PIPESTATUS[0]}
exit "$rc"
