#!/usr/bin/env bash
# Installs Triton's perf_analyzer (C++) under .venv/opt/perf_analyzer with a wrapper script
# .venv/opt/perf_analyzer/perf_analyzer that sets LD_LIBRARY_PATH.
#
# PyPI's "perf-analyzer" is an empty placeholder and current tritonclient wheels no longer ship
# the binary; the tritonclient 2.41.0 manylinux wheel still contains
# tritonclient-2.41.0.data/data/bin/perf_analyzer. It needs libb64 (Debian libb64-0d, installed
# by setup.sh) and libcudart.so.12 (PyPI nvidia-cuda-runtime-cu12; no GPU is needed to run it).
# The wheels are unpacked here rather than installed, so the venv keeps its newer tritonclient.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.venv/opt/perf_analyzer
if [ -x "$DEST/perf_analyzer" ] && "$DEST/perf_analyzer" --version >/dev/null 2>&1; then
  echo "[perf_analyzer] present: $DEST/perf_analyzer"
  exit 0
fi
PIP=.venv/bin/pip
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "[perf_analyzer] downloading tritonclient 2.41.0 and nvidia-cuda-runtime-cu12 wheels"
$PIP download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --platform manylinux1_x86_64 --python-version 3.11 -d "$TMP" "tritonclient==2.41.0"
$PIP download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --platform manylinux2014_x86_64 --python-version 3.11 -d "$TMP" "nvidia-cuda-runtime-cu12==12.4.127"
mkdir -p "$DEST/bin" "$DEST/lib"
.venv/bin/python - "$TMP" "$DEST" <<'PY'
import glob, os, shutil, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(glob.glob(os.path.join(tmp, "tritonclient-2.41.0-*.whl"))[0]) as z:
    with z.open("tritonclient-2.41.0.data/data/bin/perf_analyzer") as src, open(os.path.join(dest, "bin", "perf_analyzer"), "wb") as dst:
        shutil.copyfileobj(src, dst)
os.chmod(os.path.join(dest, "bin", "perf_analyzer"), 0o755)
with zipfile.ZipFile(glob.glob(os.path.join(tmp, "nvidia_cuda_runtime_cu12-*.whl"))[0]) as z:
    for name in z.namelist():
        if name.startswith("nvidia/cuda_runtime/lib/libcudart.so"):
            with z.open(name) as src, open(os.path.join(dest, "lib", os.path.basename(name)), "wb") as dst:
                shutil.copyfileobj(src, dst)
PY
cat > "$DEST/perf_analyzer" <<'SH'
#!/usr/bin/env bash
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$here/bin/perf_analyzer" "$@"
SH
chmod +x "$DEST/perf_analyzer"
"$DEST/perf_analyzer" --version >/dev/null 2>&1 || { echo "[perf_analyzer] installed binary does not run"; exit 1; }
echo "[perf_analyzer] installed: $DEST/perf_analyzer"
