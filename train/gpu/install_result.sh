#!/usr/bin/env bash
# Installs what train/gpu/run_train_gpu.sh brought back from the GPU machine: the converted model
# into models/demo, its run history into models/demo/training/runs.json (train/accuracy_report.py
# writes its "Training" section from it), and finalize.json and the logs into train/work/exp_gpu.
#
# Usage: train/gpu/install_result.sh DIR      (DIR = the device call's files_at)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR=${1:?usage: $0 DIR (the files_at of the run_train_gpu.sh wait call)}
for f in demo.tar runs.json finalize.json train.log pipeline.log; do
  [[ -s $DIR/$f ]] || { echo "$DIR/$f is missing: did the pipeline finish?" >&2; exit 1; }
done
tar -tf "$DIR/demo.tar" | grep -qx model.safetensors || { echo "$DIR/demo.tar holds no model" >&2; exit 1; }
tar -C "$REPO/models/demo" -xf "$DIR/demo.tar"
install -m 644 "$DIR/runs.json" "$REPO/models/demo/training/runs.json"
mkdir -p "$REPO/train/work/exp_gpu"
install -m 644 "$DIR/finalize.json" "$DIR/train.log" "$DIR/pipeline.log" "$REPO/train/work/exp_gpu/"
chmod 644 "$REPO"/models/demo/*
echo "installed into models/demo; next: .venv/bin/python train/accuracy_report.py --build build"
grep "dev greedy CER" "$DIR/train.log" | tail -3
