#!/usr/bin/env bash
# The main job: installs what is missing, builds, and transcribes the bundled sample audio with
# the bundled demo model.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
BUILD_DIR=${U2_BUILD_DIR:-build}
echo "== u2recognize on the bundled samples (models/demo) =="
"$BUILD_DIR/apps/u2recognize" --model-dir models/demo --wav-scp tests/data/samples/wav.scp \
  --text tests/data/samples/text --mode attention_rescoring
