# u2serve container image: a build stage with the C++ toolchain and a small runtime stage with the
# binaries, the bundled demo model and a non-root user (docs/deploy.md, "Container image").
#
# CPU (default, Debian 12):
#   docker build -t u2serve:cpu .
# CUDA (the build stage needs nvcc, the runtime stage only the CUDA runtime libraries; both images
# must be the same distribution release):
#   docker build -t u2serve:cuda \
#     --build-arg BUILD_IMAGE=nvidia/cuda:13.0.1-devel-ubuntu24.04 \
#     --build-arg RUNTIME_IMAGE=nvidia/cuda:13.0.1-runtime-ubuntu24.04 \
#     --build-arg U2_WITH_CUDA=ON .
# Without a registry (buildah + mmdebstrap): scripts/build_image.sh.
#
# Build arguments:
#   BASE_IMAGE          Debian/Ubuntu image both stages start from (default debian:bookworm-slim)
#   BUILD_IMAGE         image of the build stage (default BASE_IMAGE; a CUDA "devel" image for CUDA)
#   RUNTIME_IMAGE       image of the runtime stage (default BASE_IMAGE; a CUDA "runtime" image for CUDA)
#   U2_WITH_CUDA        OFF (default) or ON: build the CUDA backend (needs nvcc in BUILD_IMAGE)
#   CUDA_ARCHITECTURES  GPU architectures compiled for with U2_WITH_CUDA=ON (default "80;90")
#   JOBS                parallel compile jobs (default: all cores of the builder)

ARG BASE_IMAGE=debian:bookworm-slim
ARG BUILD_IMAGE=${BASE_IMAGE}
ARG RUNTIME_IMAGE=${BASE_IMAGE}

# ---------------------------------------------------------------------------------------------
# Build stage: the C++ build dependencies only (the -dev packages of scripts/setup.sh's
# SERVER_PACKAGES; no test libraries, ccache or anything Python). A new C++ dependency there needs
# its -dev package here too; the runtime stage finds its shared library by itself.
FROM ${BUILD_IMAGE} AS build
ARG U2_WITH_CUDA=OFF
ARG CUDA_ARCHITECTURES=80;90
ARG JOBS=
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config \
      libopenblas-dev libfftw3-dev libsndfile1-dev libsoxr-dev \
      libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev \
      libfst-dev libsentencepiece-dev \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libboost-dev libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake/ cmake/
COPY proto/ proto/
COPY src/ src/
COPY apps/ apps/
# No tests, no benchmarks, no -march=native (the image must run on any x86-64 machine); only the
# three programs the image ships, and the sentencepiece module the engine loads for BPE models from
# ../lib beside its program (src/u2/decode/bpe_tokenizer.h).
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DU2_BUILD_TESTS=OFF -DU2_BUILD_BENCH=OFF -DU2_NATIVE=OFF \
      -DU2_WITH_CUDA=${U2_WITH_CUDA} "-DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}" \
 && cmake --build build -j "${JOBS:-$(nproc)}" --target u2serve u2client u2recognize u2_sentencepiece \
 && install -d /opt/u2serve/bin /opt/u2serve/lib \
 && install -s -m 0755 build/apps/u2serve build/apps/u2client build/apps/u2recognize /opt/u2serve/bin/ \
 && install -s -m 0644 build/lib/libu2_sentencepiece.so /opt/u2serve/lib/

# The runtime stage installs exactly the packages that own the shared libraries the binaries and
# the module load (ldd + dpkg -S; libsentencepiece0 through the module), so the list follows the
# distribution (Debian 12 here, Ubuntu in the CUDA images) instead of being spelled out per release.
RUN set -eu; \
    : > /tmp/packages; \
    for lib in $(ldd /opt/u2serve/bin/* /opt/u2serve/lib/* | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u); do \
      real=$(readlink -f "$lib"); pkg=""; \
      for path in "$lib" "$real" "/usr$lib" "/usr$real" "${lib#/usr}" "${real#/usr}"; do \
        pkg=$(dpkg -S "$path" 2>/dev/null | head -n 1 | cut -d: -f1); \
        if [ -n "$pkg" ]; then break; fi; \
      done; \
      if [ -z "$pkg" ]; then echo "no package owns $lib" >&2; exit 1; fi; \
      echo "$pkg" >> /tmp/packages; \
    done; \
    sort -u /tmp/packages > /opt/u2serve/runtime-packages.txt; \
    echo "runtime packages:"; cat /opt/u2serve/runtime-packages.txt

# ---------------------------------------------------------------------------------------------
# Runtime stage: shared libraries, the three programs, the demo model, the VAD model (long
# recordings) and the bundled samples (smoke tests), run as user u2serve (uid 10001).
FROM ${RUNTIME_IMAGE} AS runtime
ARG DEBIAN_FRONTEND=noninteractive
COPY --from=build /opt/u2serve/runtime-packages.txt /opt/u2serve/runtime-packages.txt
# Only the packages not in RUNTIME_IMAGE already (CUDA images hold their CUDA packages).
RUN for p in $(cat /opt/u2serve/runtime-packages.txt); do \
      dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"; \
    done > /tmp/missing \
 && echo "installing: $(cat /tmp/missing | tr '\n' ' ')" \
 && apt-get update \
 && xargs -r -a /tmp/missing apt-get install -y --no-install-recommends \
 && rm -rf /tmp/missing /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
      /var/log/apt /var/log/dpkg.log \
 && (getent group u2serve >/dev/null || groupadd --system --gid 10001 u2serve) \
 && (getent passwd u2serve >/dev/null || useradd --system --uid 10001 --gid 10001 \
      --home-dir /opt/u2serve --no-create-home --shell /usr/sbin/nologin u2serve)

COPY --from=build /opt/u2serve/bin/ /opt/u2serve/bin/
COPY --from=build /opt/u2serve/lib/ /opt/u2serve/lib/
# The demo model: what the engine reads (model.json, the weights with CMVN inside, units.txt and
# the n-gram LM that is fused by default); not its training history or training config.
COPY models/demo/model.json models/demo/model.safetensors models/demo/units.txt models/demo/lm.arpa \
     /opt/u2serve/models/demo/
COPY models/silero_vad/vad.json models/silero_vad/vad.safetensors models/silero_vad/README.md \
     /opt/u2serve/models/silero_vad/
COPY tests/data/samples/ /opt/u2serve/samples/

# Fail the build here, not at the first start, if a shared library is missing.
RUN if ldd /opt/u2serve/bin/* /opt/u2serve/lib/* | grep 'not found'; then exit 1; fi \
 && /opt/u2serve/bin/u2serve --help >/dev/null

ENV PATH=/opt/u2serve/bin:${PATH}
# The VAD's default location (--vad-model-dir models/silero_vad) is relative to this folder.
WORKDIR /opt/u2serve
USER 10001:10001
# HTTP/REST + OpenAI + WebSocket, gRPC, Prometheus metrics
EXPOSE 8000 8001 8002
# No HEALTHCHECK: the image has no curl; orchestrators probe GET /v2/health/ready on :8000
# (Kubernetes: see the Helm chart's probes).

# Declared here, just before use, so that new values do not invalidate the cached layers above.
ARG U2_WITH_CUDA=OFF
ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="u2serve" \
      org.opencontainers.image.description="WeNet U2/U2++ speech recognition server (Triton/KServe v2 gRPC + HTTP, OpenAI /v1/audio/transcriptions, WebSocket) with a small English demo model" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${CREATED}" \
      io.u2serve.cuda="${U2_WITH_CUDA}"

ENTRYPOINT ["/opt/u2serve/bin/u2serve"]
CMD ["--model-dir", "/opt/u2serve/models/demo", "--bind", "0.0.0.0"]
