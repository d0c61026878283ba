#!/usr/bin/env bash
# Builds the GPU tests and benchmark HERE (the GPU machine lacks the Debian -dev packages) and packs
# them with the shared libraries they need into .gpu-carry/u2gpu.tar.xz, which the device tool
# carries to the GPU machine (`carry: [".gpu-carry"]`), where bench/gpu/run_gpu.sh unpacks it.
#
# Not packed: glibc (the GPU image's is newer) and the CUDA libraries (cuBLAS, cuBLASLt, cuFFT are
# hundreds of MB; the GPU image has CUDA 13.0 like this toolkit). libcudart is packed (small).
# libstdc++/libgcc_s go to lib-cxx/, used only if the GPU machine's own are missing or too old.
#
# It builds the COMMITTED state (git HEAD, exported to /tmp/u2gpu-src; only changed files are
# rewritten there, so rebuilds are incremental), not the shared working tree, which other engineers
# may be editing. --worktree builds the working tree instead.
#
# Usage: bench/gpu/make_carry.sh [--worktree] [BUILD_DIR (default <source>/build-gpu)]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FROM_WORKTREE=0
if [[ ${1:-} == --worktree ]]; then FROM_WORKTREE=1; shift; fi
if [[ $FROM_WORKTREE == 1 ]]; then
  SRC=$REPO
else
  SRC=${U2_CARRY_SRC:-/tmp/u2gpu-src}
  EXPORT=$(mktemp -d)
  git -C "$REPO" archive HEAD | tar -x -C "$EXPORT"
  mkdir -p "$SRC"
  (cd "$EXPORT" && find . -type f) | while read -r f; do
    if ! cmp -s "$EXPORT/$f" "$SRC/$f"; then mkdir -p "$(dirname "$SRC/$f")"; cp "$EXPORT/$f" "$SRC/$f"; fi
  done
  (cd "$SRC" && find . -type f -not -path './build-gpu/*') | while read -r f; do
    [[ -e $EXPORT/$f ]] || rm -f "$SRC/$f"
  done
  rm -rf "$EXPORT"
  echo "== source: git HEAD $(git -C "$REPO" rev-parse --short HEAD) exported to $SRC"
fi
BUILD=${1:-$SRC/build-gpu}
cd "$SRC"
# Every GPU test (tests/gpu/test_*.cc, one binary each) and both GPU benchmark drivers.
GPU_TESTS=()
for f in tests/gpu/test_*.cc; do GPU_TESTS+=("$(basename "$f" .cc)"); done
TARGETS=("${GPU_TESTS[@]}" u2gpubench u2gpustream)

echo "== configure $BUILD (Release, CUDA ON, sm_90, no -march=native)"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DU2_WITH_CUDA=ON -DU2_NATIVE=OFF \
  -DU2_BUILD_TESTS=ON -DU2_BUILD_BENCH=ON -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
echo "== build ${TARGETS[*]}"
nice -n 10 cmake --build "$BUILD" -j2 --target "${TARGETS[@]}"

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/u2gpu/bin" "$STAGE/u2gpu/lib" "$STAGE/u2gpu/lib-cxx"
bins=()
for t in "${GPU_TESTS[@]}"; do bins+=("$BUILD/tests/gpu/$t"); done
bins+=("$BUILD/u2gpubench" "$BUILD/bench/gpu/u2gpustream")
for b in "${bins[@]}"; do
  [[ -x $b ]] || { echo "make_carry: $b was not built" >&2; exit 1; }
  cp "$b" "$STAGE/u2gpu/bin/"
  strip "$STAGE/u2gpu/bin/$(basename "$b")"
done
for lib in $(ldd "${bins[@]}" | awk '/=> \// {print $3}' | sort -u); do
  name=$(basename "$lib")
  case "$name" in
    libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libresolv.so*) ;;   # glibc: the host's
    libcuda.so*|libcublas*|libcufft*|libnvidia*|libnvJitLink*) ;;                     # CUDA: the GPU machine's
    libstdc++.so*|libgcc_s.so*) cp -L "$lib" "$STAGE/u2gpu/lib-cxx/" ;;
    *) cp -L "$lib" "$STAGE/u2gpu/lib/" ;;
  esac
done
{ git -C "$REPO" rev-parse HEAD; [[ $FROM_WORKTREE == 1 ]] && echo "(working tree)"; } >"$STAGE/u2gpu/COMMIT" 2>/dev/null || true
mkdir -p "$REPO/.gpu-carry"
EXCLUDE=$(git -C "$REPO" rev-parse --path-format=absolute --git-path info/exclude)
mkdir -p "$(dirname "$EXCLUDE")"
grep -qx '/.gpu-carry/' "$EXCLUDE" 2>/dev/null || echo '/.gpu-carry/' >>"$EXCLUDE"  # never committed
tar -C "$STAGE" -cJf "$REPO/.gpu-carry/u2gpu.tar.xz" u2gpu
echo "== packed: $(du -h "$REPO/.gpu-carry/u2gpu.tar.xz" | cut -f1) .gpu-carry/u2gpu.tar.xz"
ls -la "$STAGE/u2gpu/bin" "$STAGE/u2gpu/lib" "$STAGE/u2gpu/lib-cxx"
