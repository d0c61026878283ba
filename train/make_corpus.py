#!/usr/bin/env python3
"""Builds the text corpus for the demo model from text already on this machine.

Sources: man pages (troff stripped), perl pod, vim help and /usr/share/doc READMEs.
Sentences are split on . ! ? ; : , lower-cased, and kept only if they have 4-22 words,
no digits or symbols, and every word appears in /usr/share/dict/words. The character
set is then exactly "a-z ' space", which is what the 31-unit table covers.

Output (train/work/corpus/): train.txt, dev.txt, test.txt, test_heldout_voice.txt,
one sentence a line. Dev/test sentences never occur in train. Shuffling uses a fixed
integer seed, so the split is reproducible.

Usage: python3 train/make_corpus.py [--out train/work/corpus] [--seed 1234]
"""
import argparse
import glob
import gzip
import os
import random
import re

ROOT = os.path.dirname(os.path.abspath(__file__))


def read_text(path):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rt", errors="ignore") as f:
                return f.read()
        with open(path, errors="ignore") as f:
            return f.read()
    except OSError:
        return ""


def strip_troff(text):
    lines = []
    for line in text.splitlines():
        if line.startswith((".", "'")):
            # Macro lines: keep the argument text of font macros (.B foo), drop the rest.
            m = re.match(r"^\.(B|I|BI|IB|BR|RB|IR|RI|SM|SB)\s+(.*)$", line)
            if not m:
                continue
            line = m.group(2).replace('"', " ")
        line = re.sub(r"\\f[BIRP]|\\f\(..|\\f\[[^\]]*\]", "", line)
        line = re.sub(r"\\\(..|\\\[[^\]]*\]|\\[-e&|^%]", " ", line)
        line = re.sub(r"\\.", " ", line)
        lines.append(line)
    return "\n".join(lines)


def sources():
    for path in sorted(glob.glob("/usr/share/man/man[1-8]/*")):
        yield strip_troff(read_text(path))
    for path in sorted(glob.glob("/usr/share/perl/*/pod/*.pod")):
        yield re.sub(r"[A-Z]<([^>]*)>", r"\1", read_text(path))
    for path in sorted(glob.glob("/usr/share/vim/vim*/doc/*.txt*")):
        yield read_text(path)
    for path in sorted(glob.glob("/usr/share/doc/*/README*")):
        yield read_text(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "work", "corpus"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--n-dev", type=int, default=300)
    ap.add_argument("--n-test", type=int, default=600)
    ap.add_argument("--n-test-heldout", type=int, default=600)
    args = ap.parse_args()

    with open("/usr/share/dict/words", errors="ignore") as f:
        vocab = {w.strip().lower() for w in f if w.strip().isalpha() or "'" in w}

    seen = set()
    sentences = []
    for text in sources():
        text = text.replace("\n", " ")
        for raw in re.split(r"[.!?;:]", text):
            s = raw.strip().lower()
            s = re.sub(r"[-,()\"]", " ", s)
            if not s or re.search(r"[^a-z' ]", s):
                continue
            words = s.split()
            if not 4 <= len(words) <= 22:
                continue
            if any(w not in vocab or w.startswith("'") or w.endswith("'") for w in words):
                continue
            s = " ".join(words)
            if s in seen:
                continue
            seen.add(s)
            sentences.append(s)

    sentences.sort()
    random.Random(args.seed).shuffle(sentences)
    n_eval = args.n_dev + args.n_test + args.n_test_heldout
    splits = {
        "dev": sentences[: args.n_dev],
        "test": sentences[args.n_dev : args.n_dev + args.n_test],
        "test_heldout_voice": sentences[args.n_dev + args.n_test : n_eval],
        "train": sentences[n_eval:],
    }
    os.makedirs(args.out, exist_ok=True)
    for name, items in splits.items():
        with open(os.path.join(args.out, name + ".txt"), "w") as f:
            f.write("".join(s + "\n" for s in items))
        print(f"{name}: {len(items)} sentences")


if __name__ == "__main__":
    main()
