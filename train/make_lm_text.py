#!/usr/bin/env python3
"""Writes the text that the n-gram LMs of docs/language-models.md are built from, one sentence a
line, into train/work/lm/ (tools/build_lm.py then makes an ARPA file of any of them):

  info_indomain.txt  the GNU info manuals (/usr/share/info): the domain the synthetic evaluation
                     sentences were drawn from, with every evaluation sentence removed, so an LM of
                     it is "in-domain" for the synthetic sets without having seen their sentences
  general.txt        everyday English (fortunes, WordNet examples and glosses): the demo model's
                     everyday training text (train/make_corpus.py), for a general-English LM
  technical.txt      the man pages and docs the demo model was trained on
  real_dev.txt       transcripts of the real-speech dev half; real_test.txt of the test half
                     (an in-domain LM for the other half: built from dev, measured on test)

Needs train/work/corpus (train/make_corpus.py) and data/real_speech (tools/fetch_real_speech.py).
Usage: python3 train/make_lm_text.py [--out train/work/lm]
"""
import argparse
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)
import make_corpus  # noqa: E402

REAL = os.path.join(os.path.dirname(ROOT), "data", "real_speech", "asterisk_en")


def transcripts(path):
    with open(path) as f:
        return [line.split(maxsplit=1)[1].strip() for line in f if len(line.split(maxsplit=1)) == 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "work", "lm"))
    ap.add_argument("--corpus", default=os.path.join(ROOT, "work", "corpus"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    held_out = set()
    for name in ("dev", "test", "test_heldout_voice"):
        with open(os.path.join(ROOT, "eval_text", name + ".txt")) as f:
            held_out.update(line.strip() for line in f if line.strip())
    for half in ("dev", "test"):
        held_out.update(transcripts(os.path.join(REAL, half, "text")))

    with open("/usr/share/dict/words", errors="ignore") as f:
        vocab = {w.strip().lower() for w in f if w.strip().isalpha() or "'" in w}
    info = [s for s in make_corpus.sentences_of(make_corpus.info_manuals(), vocab, min_words=3)
            if s not in held_out]
    make_corpus.write_lines(os.path.join(args.out, "info_indomain.txt"), info)
    print(f"info_indomain.txt: {len(info)} sentences (evaluation sentences removed)")

    for src, dst in (("train_everyday.txt", "general.txt"), ("train.txt", "technical.txt")):
        shutil.copyfile(os.path.join(args.corpus, src), os.path.join(args.out, dst))
        print(f"{dst}: from {os.path.join(args.corpus, src)}")
    for half in ("dev", "test"):
        lines = transcripts(os.path.join(REAL, half, "text"))
        make_corpus.write_lines(os.path.join(args.out, f"real_{half}.txt"), lines)
        print(f"real_{half}.txt: {len(lines)} transcripts")


if __name__ == "__main__":
    main()
