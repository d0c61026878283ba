#!/usr/bin/env bash
# Packs what GPU training needs from THIS machine into .train-carry/u2train.tar.xz, which the device
# tool carries to the GPU machine (`carry: [".train-carry"]`), where train/gpu/run_train_gpu.sh
# unpacks it. The GPU machine has PyTorch but none of the synthesizers, cannot install packages, and
# the generated speech (tens of GB of wavs/features) is far over the 64 MiB a call may carry, so the
# speech is synthesized there from the same programs and text:
#
#   bin/      espeak-ng, sox, flite and festival (Debian bookworm's), run through wrappers that
#             point them at lib/, espeak-ng-data/ and festival/ only, so nothing else on the GPU
#             machine sees these libraries
#   lib/      their shared libraries (ldd closure, without glibc itself: the GPU image's is newer)
#   espeak-ng-data/   voices and dictionaries
#   festival/ Festival's library folder (/usr/share/festival: Scheme code, lexicons and the festvox
#             voices of the mixed recipe, without the held-out test voice ked_diphone)
#   wheels/   PyPI g722 for the GPU image's Python 3.12 (the mixed recipe's G.722 codec)
#   corpus/   train/work/corpus/*.txt (make_corpus.py reads this machine's man pages, docs and
#             dictionaries, which the GPU machine lacks)
#
# The same binaries and seeds give the same wavs there as here, so the test sets evaluated here
# (train/accuracy_report.py) are the ones the model never saw there either.
#
# Usage: train/gpu/make_carry.sh      (after make_corpus.py; needs espeak-ng, sox, flite and
#        festival installed, and pip able to download the g722 wheel)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CORPUS=$REPO/train/work/corpus
OUT=$REPO/.train-carry
for f in train train_everyday dev test test_heldout_voice; do
  [[ -s $CORPUS/$f.txt ]] || { echo "missing $CORPUS/$f.txt: run train/make_corpus.py first" >&2; exit 1; }
done
TOOLS=()
for tool in espeak-ng sox flite festival; do
  TOOLS+=("$(command -v $tool)") || {
    echo "$tool must be installed (scripts/setup.sh installs espeak-ng, sox, flite and festival)" >&2; exit 1; }
done
DATA=$(espeak-ng --version | sed -n 's/.*Data at: *//p')
[[ -d $DATA ]] || { echo "espeak-ng data directory not found ($DATA)" >&2; exit 1; }
FESTIVAL_LIB=/usr/share/festival
[[ -d $FESTIVAL_LIB/voices ]] || { echo "no festival voices in $FESTIVAL_LIB/voices" >&2; exit 1; }

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
P=$STAGE/u2train
mkdir -p "$P/bin" "$P/real" "$P/lib" "$P/corpus" "$P/wheels"
cp "${TOOLS[@]}" "$P/real/"
ldd "${TOOLS[@]}" | awk '/=> \// {print $3}' | sort -u | while read -r lib; do
  case $(basename "$lib") in
    libc.so.* | libm.so.* | libdl.so.* | libpthread.so.* | librt.so.* | ld-linux*) ;;
    *) cp -L "$lib" "$P/lib/" ;;
  esac
done
cp -r "$DATA" "$P/espeak-ng-data"
cp -rL "$FESTIVAL_LIB" "$P/festival"
# The unseen-synthesizer test voice stays here: the GPU run cannot train on what it does not have.
rm -rf "$P/festival/voices/english/ked_diphone"
cp "$CORPUS"/{train,train_everyday,dev,test,test_heldout_voice}.txt "$P/corpus/"
"$REPO/.venv/bin/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$P/wheels" g722 || {
  echo "could not download the g722 wheel for Python 3.12" >&2; exit 1; }
for tool in espeak-ng sox flite festival; do
  # Festival finds its Scheme code, lexicons and voices under --libdir (Debian's: /usr/share/festival).
  extra=""
  [[ $tool == festival ]] && extra='--libdir "$HERE/festival"'
  cat >"$P/bin/$tool" <<EOF
#!/bin/sh
# Carried Debian $tool with its own libraries (train/gpu/make_carry.sh).
HERE=\$(dirname "\$(readlink -f "\$0")")/..
LD_LIBRARY_PATH=\$HERE/lib ESPEAK_DATA_PATH=\$HERE exec "\$HERE/real/$tool" $extra "\$@"
EOF
  chmod +x "$P/bin/$tool"
done

# Check the package works in a clean environment through the wrappers (espeak-ng was checked with
# strace when this was written: only glibc and no espeak-ng-data of the system's are opened).
# Festival runs from an empty folder with an empty HOME, so it reads no system or user init file.
WAV=$STAGE/check.wav
check() {
  [[ -s $WAV && $(stat -c %s "$WAV") -gt 32000 ]] || { echo "carried $1 produced no audio" >&2; exit 1; }
  rm -f "$WAV"
}
env -i PATH="$P/bin:/usr/bin:/bin" sh -c \
  "espeak-ng -v en-us --stdout 'the carried speech synthesizer works' | sox -V1 -t wav - -r 16000 -c 1 -b 16 $WAV"
check "espeak-ng | sox"
env -i PATH="$P/bin:/usr/bin:/bin" flite -voice slt -t "the carried flite works" -o "$WAV"
check flite
mkdir "$STAGE/empty"
(cd "$STAGE/empty" && env -i PATH="$P/bin:/usr/bin:/bin" HOME="$STAGE/empty" festival --pipe >/dev/null <<EOF
(voice_cmu_us_slt_arctic_hts)
(utt.save.wave (utt.synth (Utterance Text "the carried festival works")) "$WAV" 'riff)
EOF
)
check festival

# One device call may carry 64 MiB with the working tree (about 44 MB), and the package is larger:
# it travels in pieces of PIECE_MB, one per call (.train-carry/1, .train-carry/2, ...), each
# received with `run_train_gpu.sh receive` and joined by `start` (the checksum guards the join).
PIECE_MB=${U2_CARRY_PIECE_MB:-16}
rm -rf "$OUT"
mkdir -p "$OUT"
tar -C "$STAGE" -cf - u2train | xz -9 -T2 >"$STAGE/u2train.tar.xz"
split -b "${PIECE_MB}M" -d -a 2 "$STAGE/u2train.tar.xz" "$STAGE/u2train.tar.xz."
n=0
for piece in "$STAGE"/u2train.tar.xz.[0-9][0-9]; do
  n=$((n + 1))
  mkdir -p "$OUT/$n"
  mv "$piece" "$OUT/$n/"
done
echo "$n $(sha256sum <"$STAGE/u2train.tar.xz" | cut -d' ' -f1)" >"$OUT/manifest"
for i in $(seq 1 "$n"); do cp "$OUT/manifest" "$OUT/$i/"; done
echo "== $OUT: $n pieces, $(du -h "$STAGE/u2train.tar.xz" | cut -f1) in all" \
  "($(ls "$P/lib" | wc -l) libraries, corpus $(wc -l <"$P/corpus/train.txt") technical +" \
  "$(wc -l <"$P/corpus/train_everyday.txt") everyday sentences)"
