#!/usr/bin/env bash
# Packs what GPU training needs from THIS machine into .train-carry/u2train.tar.xz, which the device
# tool carries to the GPU machine (`carry: [".train-carry"]`), where train/gpu/run_train_gpu.sh
# unpacks it. The GPU machine has PyTorch but no espeak-ng or sox and cannot install packages, and
# the generated speech (tens of GB of wavs/features) is far over the 64 MiB a call may carry, so the
# speech is synthesized there from the same programs and text:
#
#   bin/      espeak-ng and sox (Debian bookworm's), run through wrappers that point them at lib/
#             and at espeak-ng-data/ only, so nothing else on the GPU machine sees these libraries
#   lib/      their shared libraries (ldd closure, without glibc itself: the GPU image's is newer)
#   espeak-ng-data/   voices and dictionaries
#   corpus/   train/work/corpus/*.txt (make_corpus.py reads this machine's man pages and docs,
#             which the GPU machine lacks)
#
# The same binaries and seeds give the same wavs there as here, so the test sets evaluated here
# (train/accuracy_report.py) are the ones the model never saw there either.
#
# Usage: train/gpu/make_carry.sh      (after make_corpus.py; needs espeak-ng and sox installed)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CORPUS=$REPO/train/work/corpus
OUT=$REPO/.train-carry
for f in train dev test test_heldout_voice; do
  [[ -s $CORPUS/$f.txt ]] || { echo "missing $CORPUS/$f.txt: run train/make_corpus.py first" >&2; exit 1; }
done
ESPEAK=$(command -v espeak-ng) SOX=$(command -v sox) || {
  echo "espeak-ng and sox must be installed (scripts/setup.sh installs them)" >&2; exit 1; }
DATA=$(espeak-ng --version | sed -n 's/.*Data at: *//p')
[[ -d $DATA ]] || { echo "espeak-ng data directory not found ($DATA)" >&2; exit 1; }

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
P=$STAGE/u2train
mkdir -p "$P/bin" "$P/real" "$P/lib" "$P/corpus"
cp "$ESPEAK" "$SOX" "$P/real/"
ldd "$ESPEAK" "$SOX" | awk '/=> \// {print $3}' | sort -u | while read -r lib; do
  case $(basename "$lib") in
    libc.so.* | libm.so.* | libdl.so.* | libpthread.so.* | librt.so.* | ld-linux*) ;;
    *) cp -L "$lib" "$P/lib/" ;;
  esac
done
cp -r "$DATA" "$P/espeak-ng-data"
cp "$CORPUS"/{train,dev,test,test_heldout_voice}.txt "$P/corpus/"
for tool in espeak-ng sox; do
  cat >"$P/bin/$tool" <<EOF
#!/bin/sh
# Carried Debian $tool with its own libraries (train/gpu/make_carry.sh).
HERE=\$(dirname "\$(readlink -f "\$0")")/..
LD_LIBRARY_PATH=\$HERE/lib ESPEAK_DATA_PATH=\$HERE exec "\$HERE/real/$tool" "\$@"
EOF
  chmod +x "$P/bin/$tool"
done

# Check the package works in a clean environment through the wrappers (checked with strace when
# this was written: only glibc and no espeak-ng-data of the system's are opened).
WAV=$STAGE/check.wav
env -i PATH="$P/bin:/usr/bin:/bin" sh -c \
  "espeak-ng -v en-us --stdout 'the carried speech synthesizer works' | sox -V1 -t wav - -r 16000 -c 1 -b 16 $WAV"
[[ $(stat -c %s "$WAV") -gt 32000 ]] || { echo "carried espeak-ng | sox produced no audio" >&2; exit 1; }

mkdir -p "$OUT"
tar -C "$STAGE" -cJf "$OUT/u2train.tar.xz" u2train
echo "== $OUT/u2train.tar.xz: $(du -h "$OUT/u2train.tar.xz" | cut -f1)" \
  "($(ls "$P/lib" | wc -l) libraries, corpus $(wc -l <"$P/corpus/train.txt") train sentences)"
