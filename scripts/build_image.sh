#!/usr/bin/env bash
# Builds the u2serve container image (Dockerfile) on a machine with no registry and no Docker
# daemon, then smoke-tests it inside the image:
#   1. a Debian 12 base root file system from the machine's own apt sources (mmdebstrap; cached),
#   2. imported as localhost/debian-base:bookworm (buildah),
#   3. `buildah bud --isolation chroot` of the Dockerfile on that base (the C++ build runs inside),
#   4. inside the image (`buildah run`; podman/crun cannot run containers here): `u2serve --help`,
#      a one-shot transcription of the bundled samples with u2recognize, and u2serve started
#      inside with u2client transcribing the samples through it,
#   5. the image size, and optionally an OCI archive (--export).
# Run as root. NOT part of CI (too slow): 14 minutes on 2 shared cores here, nearly all of it
# compiling the C++ inside the build stage. Results: docs/deploy.md, "Container image".
# With a Docker daemon or podman elsewhere, just run `docker build -t u2serve:cpu .`.
#
#   scripts/build_image.sh [--variant cpu|cuda] [--jobs N] [--export PATH.tar] [--keep-cache]
#                          [--tag NAME] [--storage-driver overlay|vfs] [--no-server-test]
#
#   --variant cpu   (default) Debian 12 build and runtime stages, CPU backend.
#   --variant cuda  U2_WITH_CUDA=ON on NVIDIA CUDA images ($CUDA_BUILD_IMAGE, default
#                   nvidia/cuda:13.0.1-devel-ubuntu24.04, and $CUDA_RUNTIME_IMAGE, default
#                   nvidia/cuda:13.0.1-runtime-ubuntu24.04); both must already be in local
#                   storage (nothing is pulled), else it stops and says so.
#   --jobs N        parallel compile jobs inside the build (default: nproc).
#   --export PATH   also write the image as an OCI archive (docker/podman load, skopeo, kind load).
#   --keep-cache    keep buildah's intermediate layers (the build stage with the compiled C++), so a
#                   re-run after a change to the runtime stage does not compile again. The base
#                   root file system ($U2_IMAGE_CACHE, default /var/tmp/u2serve-image) and the base
#                   image are always kept and reused.
#   --storage-driver  buildah's storage driver (default overlay, as the store was first used; vfs
#                   where overlay mounts are not allowed).
# Environment: U2_IMAGE_CACHE, CUDA_BUILD_IMAGE, CUDA_RUNTIME_IMAGE, U2_SMOKE_PORT (first of three
# loopback ports for the in-image server test; default: the first free of 18600, 18700, ...).
set -euo pipefail
cd "$(dirname "$0")/.."

VARIANT=cpu
JOBS=$(nproc)
EXPORT_PATH=""
KEEP_CACHE=0
TAG=""
DRIVER=${STORAGE_DRIVER:-overlay}
SERVER_TEST=1
CACHE_DIR=${U2_IMAGE_CACHE:-/var/tmp/u2serve-image}
BASE_TAG=localhost/debian-base:bookworm
CUDA_BUILD_IMAGE=${CUDA_BUILD_IMAGE:-nvidia/cuda:13.0.1-devel-ubuntu24.04}
CUDA_RUNTIME_IMAGE=${CUDA_RUNTIME_IMAGE:-nvidia/cuda:13.0.1-runtime-ubuntu24.04}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "build_image.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --variant) VARIANT=${2:?}; shift 2 ;;
    --variant=*) VARIANT=${1#*=}; shift ;;
    --jobs) JOBS=${2:?}; shift 2 ;;
    --jobs=*) JOBS=${1#*=}; shift ;;
    --export) EXPORT_PATH=${2:?}; shift 2 ;;
    --export=*) EXPORT_PATH=${1#*=}; shift ;;
    --keep-cache) KEEP_CACHE=1; shift ;;
    --tag) TAG=${2:?}; shift 2 ;;
    --tag=*) TAG=${1#*=}; shift ;;
    --storage-driver) DRIVER=${2:?}; shift 2 ;;
    --storage-driver=*) DRIVER=${1#*=}; shift ;;
    --no-server-test) SERVER_TEST=0; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
done
case "$VARIANT" in cpu|cuda) ;; *) die "--variant must be cpu or cuda" ;; esac
TAG=${TAG:-localhost/u2serve:$VARIANT}

START=$(date +%s)
elapsed() { local t=$(( $(date +%s) - START )); printf '%02d:%02d' $((t / 60)) $((t % 60)); }
step() { printf '\n[%s] === %s\n' "$(elapsed)" "$*"; }
# Every command that does the work is printed as it is run.
# (to stderr, so that $(run ...) captures only the command's own output)
run() { { printf '[%s] +' "$(elapsed)"; printf ' %q' "$@"; printf '\n'; } >&2; "$@"; }
bh() { run buildah --storage-driver "$DRIVER" "$@"; }
bhq() { buildah --storage-driver "$DRIVER" "$@"; }   # queries, not printed

SMOKE_CTR=""
cleanup() { if [ -n "$SMOKE_CTR" ]; then bhq rm "$SMOKE_CTR" >/dev/null 2>&1 || true; fi; }
trap cleanup EXIT

step "u2serve image: variant $VARIANT, tag $TAG, $JOBS jobs, storage driver $DRIVER, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap and buildah's root storage)"
missing=()
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v buildah >/dev/null || missing+=(buildah)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  run apt-get update -qq
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "$(buildah --version); mmdebstrap $(mmdebstrap --version | awk '{print $2}')"

if [ "$VARIANT" = cuda ]; then
  # No registry can be reached here: the CUDA images must already be in local storage.
  for img in "$CUDA_BUILD_IMAGE" "$CUDA_RUNTIME_IMAGE"; do
    bhq inspect --type image "$img" >/dev/null 2>&1 || die "the CUDA variant needs $img in buildah's local storage, and it is not there (no registry is reachable to pull it). Load it first (e.g. buildah pull oci-archive:cuda.tar), set CUDA_BUILD_IMAGE / CUDA_RUNTIME_IMAGE to images you have, or build with docker where a registry is reachable: docker build --build-arg BUILD_IMAGE=$CUDA_BUILD_IMAGE --build-arg RUNTIME_IMAGE=$CUDA_RUNTIME_IMAGE --build-arg U2_WITH_CUDA=ON -t u2serve:cuda . (docs/deploy.md)"
  done
  BUILD_ARGS=(--build-arg "BUILD_IMAGE=$CUDA_BUILD_IMAGE" --build-arg "RUNTIME_IMAGE=$CUDA_RUNTIME_IMAGE"
              --build-arg U2_WITH_CUDA=ON)
else
  # 1. The base root file system, from this machine's own apt sources (and its apt settings for
  #    them), so the image's `apt-get install` steps use the same mirror.
  ROOTFS=$CACHE_DIR/debian-bookworm-slim.tar
  NEW_ROOTFS=0
  if [ -f "$ROOTFS" ] && [ -s "$ROOTFS" ]; then
    step "base root file system: reusing $ROOTFS ($(du -h "$ROOTFS" | cut -f1))"
  else
    step "base root file system: mmdebstrap --variant=minbase bookworm"
    mkdir -p "$CACHE_DIR"
    rm -rf "${ROOTFS%.tar}.partial.tar"
    # minbase, made like debian:bookworm-slim: merged /usr set up by mmdebstrap's hook (no
    # usrmerge, hence no perl), and no documentation, manual pages or translations (the dpkg
    # options stay in the image, so later apt-get installs leave them out too).
    MM_ARGS=(--variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
    for p in '/usr/share/doc/*' '/usr/share/man/*' '/usr/share/info/*' '/usr/share/groff/*' \
             '/usr/share/lintian/*' '/usr/share/linda/*' '/usr/share/locale/*'; do
      MM_ARGS+=("--dpkgopt=path-exclude=$p")
    done
    MM_ARGS+=(--dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-include=/usr/share/locale/locale.alias')
    SOURCES=()
    if grep -qs '^VERSION_CODENAME=bookworm' /etc/os-release; then
      for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
        if [ -s "$f" ] && grep -qsE '^[[:space:]]*(deb |Types:)' "$f"; then SOURCES=("$f"); break; fi
      done
      if apt-config dump 2>/dev/null | grep '^Acquire::Check-Valid-Until "false"' >/dev/null; then
        MM_ARGS+=(--aptopt='Acquire::Check-Valid-Until "false"')
      fi
    fi
    run mmdebstrap "${MM_ARGS[@]}" --format=tar bookworm "${ROOTFS%.tar}.partial.tar" "${SOURCES[@]}"
    mv "${ROOTFS%.tar}.partial.tar" "$ROOTFS"
    NEW_ROOTFS=1   # import it again
    echo "$(du -h "$ROOTFS" | cut -f1) $ROOTFS"
  fi

  # 2. The base image.
  if [ "$NEW_ROOTFS" -eq 0 ] && bhq inspect --type image "$BASE_TAG" >/dev/null 2>&1; then
    step "base image: reusing $BASE_TAG"
  else
    step "base image: importing $ROOTFS as $BASE_TAG"
    ctr=$(bh from --name u2serve-base-import scratch)
    bh add "$ctr" "$ROOTFS" /
    bh config --cmd /bin/bash --label org.opencontainers.image.title="Debian 12 minbase, slim (mmdebstrap)" "$ctr"
    bh commit --quiet --rm "$ctr" "$BASE_TAG"
  fi
  BUILD_ARGS=(--build-arg "BASE_IMAGE=$BASE_TAG" --build-arg U2_WITH_CUDA=OFF)
fi

# 3. The image.
step "building $TAG from the Dockerfile (the C++ build runs inside; the longest step)"
LAYER_ARGS=(--layers)
bh bud --isolation chroot --pull=never "${LAYER_ARGS[@]}" \
  "${BUILD_ARGS[@]}" --build-arg "JOBS=$JOBS" \
  --build-arg "VCS_REF=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -f Dockerfile -t "$TAG" .
step "built $TAG"
bhq images "$TAG"
echo "config: $(bhq inspect --type image --format 'User={{.OCIv1.Config.User}} WorkingDir={{.OCIv1.Config.WorkingDir}} Entrypoint={{.OCIv1.Config.Entrypoint}} Cmd={{.OCIv1.Config.Cmd}} ExposedPorts={{.OCIv1.Config.ExposedPorts}}' "$TAG")"

# 4. Smoke tests inside the image.
step "smoke test: a container from $TAG"
SMOKE_CTR=$(bh from --pull=never --name u2serve-smoke-$$ "$TAG")
inrun() { bh run --isolation chroot "$SMOKE_CTR" -- "$@"; }

step "smoke test: who runs, what is shipped"
# shellcheck disable=SC2016  # expanded inside the image
inrun sh -c 'id; echo "runtime packages: $(tr "\n" " " < /opt/u2serve/runtime-packages.txt)"; ls -l /opt/u2serve/bin /opt/u2serve/lib /opt/u2serve/models/demo; if ldd /opt/u2serve/bin/* /opt/u2serve/lib/* | grep "not found"; then exit 1; fi'

step "smoke test: u2serve --help"
inrun /opt/u2serve/bin/u2serve --help > "$CACHE_DIR/help.txt" || die "u2serve --help failed inside the image"
head -n 8 "$CACHE_DIR/help.txt"
echo "... ($(wc -l < "$CACHE_DIR/help.txt") lines)"

step "smoke test: one-shot transcription of the bundled samples (u2recognize, demo model)"
inrun /opt/u2serve/bin/u2recognize --model-dir /opt/u2serve/models/demo \
  --wav-scp /opt/u2serve/samples/wav.scp --text /opt/u2serve/samples/text 2>&1 | tee "$CACHE_DIR/recognize.txt"
n=$(grep -c '^test_' "$CACHE_DIR/recognize.txt" || true)
[ "$n" -eq "$(wc -l < tests/data/samples/wav.scp)" ] || die "u2recognize printed $n transcripts, expected $(wc -l < tests/data/samples/wav.scp)"

if [ "$SERVER_TEST" -eq 1 ]; then
  port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
  if [ -n "${U2_SMOKE_PORT:-}" ]; then
    P=$U2_SMOKE_PORT
  else
    for P in 18600 18700 18800 18900 19000 19100; do
      port_busy "$P" || port_busy $((P + 1)) || port_busy $((P + 2)) || break
    done
  fi
  step "smoke test: u2serve inside the image (HTTP $P, gRPC $((P + 1)), metrics $((P + 2))), u2client transcribing through it"
  # chroot isolation shares the machine's network, hence loopback ports chosen free.
  # shellcheck disable=SC2016  # expanded inside the image
  inrun sh -c '
    P=$1
    /opt/u2serve/bin/u2serve --model-dir /opt/u2serve/models/demo --bind 127.0.0.1 \
      --http-port "$P" --grpc-port $((P + 1)) --metrics-port $((P + 2)) > /tmp/u2serve.log 2>&1 &
    pid=$!
    /opt/u2serve/bin/u2client --url "127.0.0.1:$((P + 1))" --wait 120 \
      --wav-scp /opt/u2serve/samples/wav.scp --text /opt/u2serve/samples/text
    rc=$?
    kill -TERM "$pid"; wait "$pid"; echo "u2serve exited with status $? after SIGTERM; its log:"
    sed "s/^/  | /" /tmp/u2serve.log
    exit "$rc"' sh "$P" 2>&1 | tee "$CACHE_DIR/server.txt"
  n=$(grep -c '^test_' "$CACHE_DIR/server.txt" || true)
  [ "$n" -eq "$(wc -l < tests/data/samples/wav.scp)" ] || die "u2client printed $n transcripts, expected $(wc -l < tests/data/samples/wav.scp)"
fi
bh rm "$SMOKE_CTR" >/dev/null
SMOKE_CTR=""

# 5. Size, export, cache.
step "image size"
bhq images --format '{{.Name}}:{{.Tag}} {{.ID}} {{.Size}}' "$TAG"
if [ -n "$EXPORT_PATH" ]; then
  step "exporting $TAG to $EXPORT_PATH (OCI archive)"
  rm -f "$EXPORT_PATH"
  bh push --quiet "$TAG" "oci-archive:$EXPORT_PATH:${TAG#localhost/}"
  ls -lh "$EXPORT_PATH"
fi
if [ "$KEEP_CACHE" -eq 0 ]; then
  step "removing intermediate layers (--keep-cache keeps them)"
  bh rmi --prune >/dev/null || true
fi
step "done in $(elapsed) (mm:ss): $TAG"
