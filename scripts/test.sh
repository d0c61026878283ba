#!/usr/bin/env bash
# Runs every test: installs what is missing, builds, then the C++ tests (ctest) and the Python
# tests (pytest). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
BUILD_DIR=${U2_BUILD_DIR:-build}
echo "== C++ tests (ctest) =="
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)"
echo "== Python tests (pytest) =="
U2_BUILD_DIR="$BUILD_DIR" .venv/bin/python -m pytest -q tests/python
