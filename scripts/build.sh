#!/usr/bin/env bash
# Configures and builds u2serve (Release) into build/ (U2_BUILD_DIR).
#
#   scripts/build.sh [CMAKE_ARGS...]            everything: libraries, apps, tests, benchmarks;
#                                               the CUDA backend where nvcc is found (U2_WITH_CUDA=AUTO)
#   scripts/build.sh --server [CMAKE_ARGS...]   only u2serve and u2client (scripts/demo.sh); the
#                                               CUDA backend only where a GPU is visible or
#                                               U2_WITH_CUDA=ON asks for it
# Both use the same build dir, so the full build after a server build compiles only the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${U2_BUILD_DIR:-build}
JOBS=${U2_JOBS:-$(nproc)}
SERVER_ONLY=0
if [[ "${1:-}" == "--server" ]]; then
  SERVER_ONLY=1
  shift
fi
LAUNCHER=()
command -v ccache >/dev/null && LAUNCHER=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
if [[ $SERVER_ONLY == 1 ]]; then
  CUDA=OFF
  nvidia-smi -L >/dev/null 2>&1 && CUDA=AUTO
  OPTIONS=(-DU2_BUILD_TESTS=OFF -DU2_BUILD_BENCH=OFF "-DU2_WITH_CUDA=${U2_WITH_CUDA:-$CUDA}")
  TARGETS=(--target u2serve u2client)
else
  OPTIONS=(-DU2_BUILD_TESTS=ON -DU2_BUILD_BENCH=ON "-DU2_WITH_CUDA=${U2_WITH_CUDA:-AUTO}")
  TARGETS=()
fi
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "${LAUNCHER[@]}" "${OPTIONS[@]}" "$@" >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS" "${TARGETS[@]}"
