#!/usr/bin/env bash
# Sanitizer runs (docs/reliability.md): builds the C++ tests, u2serve and the tools with
#   asan: AddressSanitizer + LeakSanitizer + UndefinedBehaviorSanitizer   (build-asan/)
#   tsan: ThreadSanitizer                                                  (build-tsan/)
# (gcc, RelWithDebInfo, no CUDA), then runs under each: every C++ test (ctest), and the server
# run: the pytest modules that drive u2serve (offline HTTP/gRPC requests, Triton sequences,
# WebSocket streams, bad inputs, clients that vanish, shutdown) against the sanitized binaries.
# Any report fails the run: the sanitizers halt the process on the first error, and a server
# that halts or exits non-zero fails its test.
#
#   scripts/sanitize.sh [asan|tsan|all] [--quick]
#
# --quick: the C++ tests and the bad-input and WebSocket server tests only (what CI can afford).
# Suppressions live in scripts/sanitizers/*.supp, each with the reason it is there.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-all}
QUICK=0
[[ " $* " == *" --quick "* ]] && QUICK=1
JOBS=${U2_JOBS:-$(nproc)}
SUPP=$PWD/scripts/sanitizers

SERVER_TESTS=(tests/python/test_server_bad_input.py tests/python/test_websocket.py)
if [[ $QUICK == 0 ]]; then
  SERVER_TESTS+=(tests/python/test_server.py tests/python/test_server_streaming.py
                 tests/python/test_openai_api.py tests/python/test_long_audio.py tests/python/test_hotwords.py
                 tests/python/test_graceful_drain.py)
fi

run() {
  local name=$1 flags=$2 dir=build-$1
  echo "== $name: configure and build ($dir) =="
  local launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DU2_BUILD_BENCH=OFF -DU2_WITH_CUDA=OFF \
    -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" \
    "${launcher[@]}" >/dev/null
  cmake --build "$dir" -j "$JOBS"
  echo "== $name: C++ tests =="
  ctest --test-dir "$dir" --output-on-failure -j "$JOBS" --timeout 1800
  echo "== $name: server run =="
  U2_SANITIZER=$name U2_BUILD_DIR=$dir .venv/bin/python -m pytest -q -x "${SERVER_TESTS[@]}"
  echo "== $name: clean =="
}

# Halt on the first report; a report in a server makes it exit non-zero, which its test checks.
# The quarantine of freed blocks (use-after-free detection) is 32 MB rather than 256: the
# server tests bound RSS growth, and tests/python/conftest.py's ASAN_QUARANTINE_MB says the same.
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:quarantine_size_mb=32"
export LSAN_OPTIONS="suppressions=$SUPP/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# Debian's gRPC and Abseil are not built with -fsanitize=thread: TSan cannot see their own
# synchronisation (absl::Mutex's waiters, gRPC's event engine), and reported "races" inside them
# through the memmove interceptor (absl GraphCycles::GetId between two gRPC timer threads).
# ignore_noninstrumented_modules drops what interceptors see on behalf of such libraries; every
# access made by our own (instrumented) code is still checked.
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$SUPP/tsan.supp"
# OpenBLAS's own threads are not instrumented; one BLAS thread keeps TSan's view complete.
export OPENBLAS_NUM_THREADS=1

case "$MODE" in
  asan) run asan "-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" ;;
  tsan) run tsan "-fsanitize=thread -fno-omit-frame-pointer" ;;
  all)
    "$0" asan "$@"
    "$0" tsan "$@"
    ;;
  *) echo "usage: scripts/sanitize.sh [asan|tsan|all] [--quick]" >&2; exit 2 ;;
esac
