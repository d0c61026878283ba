#!/usr/bin/env python3
"""Builds the text corpus for the demo model from text already on this machine.

Training text, two pools:
  train.txt           technical: man pages (troff stripped), perl pod, vim help, /usr/share/doc READMEs
  train_everyday.txt  everyday English: the fortune cookie files (Debian `fortunes`: quotations,
                      jokes, dialogue) and WordNet's example sentences and glosses (Debian
                      `wordnet-base`), so that ordinary words are spelled right too; numbers of one
                      or two digits are written as words (tools/text_norm.py)
Evaluation text (dev, test, test_heldout_voice): fixed lists committed in train/eval_text/.
They were drawn from the GNU info manuals in /usr/share/info, which the training text never
reads, and every evaluation sentence is removed from the training text. The lists are fixed
because the training text depends on which packages a machine has installed: the first
evaluation sets were a shuffled slice of that same pool, and on a machine with slightly
different docs the shuffle moved sentences the model had trained on into the test sets, so
they could not be rebuilt (train/README.md, "Evaluation text").

Sentences are split on . ! ? ; : , lower-cased, and kept only if they have 4-22 words,
no digits or symbols, and every word appears in /usr/share/dict/words. The character
set is then exactly "a-z ' space", which is what the 31-unit table covers. Shuffling uses
a fixed integer seed.

The sentences of the shipped sample wavs (tests/data/samples/text) are kept out of training too,
and so is every transcript of the real-speech set (tools/fetch_real_speech.py: Asterisk prompts),
which is for measuring only.

Output (train/work/corpus/): train.txt and train_everyday.txt (shuffled), dev.txt, test.txt,
test_heldout_voice.txt, one sentence a line.

Usage: python3 train/make_corpus.py [--out train/work/corpus] [--seed 1234]
       python3 train/make_corpus.py --remake-eval   # draw new lists into train/eval_text/
"""
import argparse
import glob
import gzip
import os
import random
import re
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(ROOT), "tools"))
from text_norm import normalize  # noqa: E402

REAL_SPEECH_TEXT = os.path.join(os.path.dirname(ROOT), "data", "real_speech", "asterisk_en", "all", "text")


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


def everyday_sources():
    """Everyday English: fortune cookies (quotations, jokes, dialogue) and WordNet's example
    sentences and glosses."""
    for path in sorted(glob.glob("/usr/share/games/fortunes/*")):
        if os.path.isfile(path) and not path.endswith((".dat", ".u8")) and not os.path.islink(path):
            yield read_text(path).replace("%\n", ".\n")
    for path in sorted(glob.glob("/usr/share/wordnet/data.*")):
        examples, glosses = [], []
        with open(path, errors="ignore") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue
                gloss = line.split("|", 1)[1]
                examples += re.findall(r'"([^"]+)"', gloss)
                glosses.append(re.sub(r'"[^"]*"', " ", gloss).split(";")[0])
        yield ".\n".join(examples)
        yield ".\n".join(glosses)


def info_manuals():
    """The GNU info manuals (/usr/share/info): the source of the evaluation sentences only."""
    for path in sorted(glob.glob("/usr/share/info/*.info*")):
        yield read_text(path)


def sentences_of(texts, vocab, min_words=4, spoken_numbers=False):
    """Normalized sentences of `texts`, each once. With spoken_numbers, numbers of one or two
    digits become words (tools/text_norm.py) instead of rejecting the sentence."""
    seen = set()
    for text in texts:
        text = text.replace("\n", " ")
        for raw in re.split(r"[.!?;:]", text):
            s = raw.strip()
            if spoken_numbers and re.search(r"\d", s):
                s = normalize(s) or ""
            s = s.lower()
            s = re.sub(r"[-,()\"]", " ", s)
            if not s or re.search(r"[^a-z' ]", s):
                continue
            words = s.split()
            if not min_words <= len(words) <= 22:
                continue
            if any(w not in vocab or w.startswith("'") or w.endswith("'") for w in words):
                continue
            s = " ".join(words)
            if s not in seen:
                seen.add(s)
                yield s


def write_lines(path, lines):
    with open(path, "w") as f:
        f.write("".join(s + "\n" for s in lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "work", "corpus"))
    ap.add_argument("--eval-text", default=os.path.join(ROOT, "eval_text"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--remake-eval", action="store_true",
                    help="draw new evaluation lists from the info manuals into --eval-text")
    ap.add_argument("--n-dev", type=int, default=300)
    ap.add_argument("--n-test", type=int, default=600)
    ap.add_argument("--n-test-heldout", type=int, default=600)
    args = ap.parse_args()

    with open("/usr/share/dict/words", errors="ignore") as f:
        vocab = {w.strip().lower() for w in f if w.strip().isalpha() or "'" in w}

    train = sorted(sentences_of(sources(), vocab))
    eval_names = ("dev", "test", "test_heldout_voice")
    if args.remake_eval:
        known = set(train)
        pool = sorted(s for s in sentences_of(info_manuals(), vocab) if s not in known)
        random.Random(args.seed).shuffle(pool)
        sizes = (args.n_dev, args.n_test, args.n_test_heldout)
        if len(pool) < sum(sizes):
            raise SystemExit(f"the info manuals give {len(pool)} new sentences, {sum(sizes)} needed")
        os.makedirs(args.eval_text, exist_ok=True)
        start = 0
        for name, n in zip(eval_names, sizes):
            write_lines(os.path.join(args.eval_text, name + ".txt"), pool[start:start + n])
            start += n
        print(f"evaluation lists: {sum(sizes)} of {len(pool)} info-manual sentences -> {args.eval_text}")

    os.makedirs(args.out, exist_ok=True)
    held_out = set()
    for name in eval_names:
        with open(os.path.join(args.eval_text, name + ".txt")) as f:
            items = [line.strip() for line in f if line.strip()]
        held_out.update(items)
        write_lines(os.path.join(args.out, name + ".txt"), items)
        print(f"{name}: {len(items)} sentences")
    # The shipped sample utterances (tests/data/samples) stay unseen as well.
    samples = os.path.join(ROOT, "..", "tests", "data", "samples", "text")
    if os.path.exists(samples):
        with open(samples) as f:
            held_out.update(line.split(maxsplit=1)[1].strip() for line in f if " " in line.strip())
    # The real-speech transcripts are for measuring only (tools/fetch_real_speech.py).
    if os.path.exists(REAL_SPEECH_TEXT):
        with open(REAL_SPEECH_TEXT) as f:
            held_out.update(line.split(maxsplit=1)[1].strip() for line in f if " " in line.strip())
    else:
        print(f"note: {REAL_SPEECH_TEXT} is missing (run tools/fetch_real_speech.py first), so its "
              "transcripts could not be kept out of the training text")
    train = [s for s in train if s not in held_out]
    random.Random(args.seed).shuffle(train)
    write_lines(os.path.join(args.out, "train.txt"), train)
    print(f"train: {len(train)} sentences")
    technical = set(train)
    everyday = sorted(s for s in sentences_of(everyday_sources(), vocab, min_words=3, spoken_numbers=True)
                      if s not in held_out and s not in technical)
    random.Random(args.seed).shuffle(everyday)
    write_lines(os.path.join(args.out, "train_everyday.txt"), everyday)
    print(f"train_everyday: {len(everyday)} sentences")


if __name__ == "__main__":
    main()
