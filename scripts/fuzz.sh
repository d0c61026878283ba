#!/usr/bin/env bash
# Fuzzing the input parsers (docs/fuzzing.md): builds the libFuzzer targets of fuzz/ with clang,
# ASan and UBSan in build-fuzz/, then runs each for a while, one after the other.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   fuzz (default 600 s each, every target)
#   scripts/fuzz.sh --replay [TARGET...]               run each seed corpus once (a regression check)
#   scripts/fuzz.sh --list                             the targets
#
# A run starts from the committed seeds (fuzz/corpus/<target>/, read only) and writes the inputs
# it finds into build-fuzz/fuzz-corpus/<target>/ (emptied first, so runs are comparable); crashes,
# leaks, timeouts and out-of-memory inputs go to fuzz/findings/<target>/ (gitignored). One line per
# target: executions, coverage (edges, features), corpus size, result. Exits 1 if any target
# failed. Logs: build-fuzz/fuzz-logs/<target>.log.
#
# Environment: U2_FUZZ_JOBS (build parallelism, default 2), U2_FUZZ_NICE (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=build-fuzz
JOBS=${U2_FUZZ_JOBS:-2}
NICE=${U2_FUZZ_NICE:-10}

# Target -> -max_len: room for the largest seed, small enough to keep executions fast.
declare -A MAX_LEN=(
  [audio_decode_fuzzer]=16384
  [resample_fuzzer]=16393  # 9 header bytes + 4096 float samples
  [kserve_http_fuzzer]=16384
  [inflate_fuzzer]=8192
  [multipart_fuzzer]=8192
  [websocket_message_fuzzer]=4096
  [grpc_infer_request_fuzzer]=4096
  [model_config_fuzzer]=4096
  [yaml_config_fuzzer]=4096
  [arpa_fuzzer]=8192
  [hotwords_fuzzer]=4096
)
ALL=(audio_decode_fuzzer resample_fuzzer kserve_http_fuzzer inflate_fuzzer multipart_fuzzer
     websocket_message_fuzzer grpc_infer_request_fuzzer model_config_fuzzer yaml_config_fuzzer
     arpa_fuzzer hotwords_fuzzer)

MODE=fuzz
SECONDS_PER=600
if [[ ${1:-} == --list ]]; then
  printf '%s\n' "${ALL[@]}"
  exit 0
elif [[ ${1:-} == --replay ]]; then
  MODE=replay
  shift
elif [[ ${1:-} =~ ^[0-9]+$ ]]; then
  SECONDS_PER=$1
  shift
fi
TARGETS=("$@")
[[ ${#TARGETS[@]} -eq 0 ]] && TARGETS=("${ALL[@]}")
for t in "${TARGETS[@]}"; do
  [[ -n ${MAX_LEN[$t]:-} ]] || { echo "unknown target '$t' (scripts/fuzz.sh --list)" >&2; exit 2; }
done

# Configure once (clang; the gcc build/ is not touched), then build only the targets asked for.
if [[ ! -f $BUILD/build.ninja ]]; then
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  CC=clang CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DU2_BUILD_FUZZ=ON -DU2_BUILD_TESTS=OFF \
    -DU2_BUILD_BENCH=OFF -DU2_NATIVE=OFF -DU2_WITH_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "${launcher[@]}" >/dev/null
fi
nice -n "$NICE" ninja -C "$BUILD" -j "$JOBS" "${TARGETS[@]}" >/dev/null

# Leaks inside system libraries we cannot fix are suppressed (each one explained in the file);
# UBSan reports come with a stack.
export LSAN_OPTIONS="suppressions=$PWD/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

mkdir -p "$BUILD/fuzz-logs"
failed=0
printf '%-28s %8s %12s %8s %8s %7s  %s\n' target seconds execs edges features corpus result
for t in "${TARGETS[@]}"; do
  exe=$BUILD/fuzz/$t
  log=$BUILD/fuzz-logs/$t.log
  findings=fuzz/findings/$t
  mkdir -p "$findings"
  common=(-rss_limit_mb=2048 -max_len="${MAX_LEN[$t]}" -timeout=30 -print_final_stats=1
          -artifact_prefix="$findings/")
  start=$SECONDS
  if [[ $MODE == replay ]]; then
    # Every seed (and every crash reproducer kept there) once; no mutation.
    set +e
    nice -n "$NICE" "$exe" "${common[@]}" -runs=0 "fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    set -e
  else
    work=$BUILD/fuzz-corpus/$t
    rm -rf "$work"
    mkdir -p "$work"
    set +e
    nice -n "$NICE" "$exe" "${common[@]}" -max_total_time="$SECONDS_PER" "$work" "fuzz/corpus/$t" >"$log" 2>&1
    rc=$?
    set -e
  fi
  elapsed=$((SECONDS - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  # The last status line ("#N ... cov: E ft: F corp: C/...") has the coverage reached.
  status=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
  edges=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
  features=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")
  corpus=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$status")
  if [[ $rc -eq 0 ]]; then
    result=ok
  else
    failed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    result="FAILED (rc $rc${artifact:+, $artifact}; see $log)"
  fi
  printf '%-28s %8s %12s %8s %8s %7s  %s\n' "$t" "$elapsed" "${execs:--}" "${edges:--}" "${features:--}" \
    "${corpus:--}" "$result"
done
exit $failed
