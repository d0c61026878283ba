#!/usr/bin/env python3
"""Make tests/data/bpe/: a tiny sentencepiece BPE model and its WeNet-style files.

    make_bpe_fixture.py [--out tests/data/bpe] [--check]

Writes (all deterministic):
  bpe.model          a 120-piece BPE model trained on a few hundred made-up upper-case English
                     sentences (WeNet's English recipes train on upper-case transcripts)
  units.txt          WeNet's units for it: <blank> 0, <unk> 1, the pieces the training text uses
                     (sorted, as the recipes' `sort | uniq` makes them), five CJK characters (a
                     mixed Chinese + English model's units), two non-language symbols, <sos/eos>
  non_lang_syms.txt  <NOISE> and [LAUGHTER]
  cases.tsv          text<TAB>ids (space-separated) or text<TAB>!PIECE (a piece with no unit):
                     WeNet's BpeTokenizer.text2tokens + tokens2ids computed with the Python
                     sentencepiece module: the oracle for a C++ text -> pieces tokenizer
                     (cases where WeNet would map a piece to <unk> are marked with "!").
--check recomputes cases.tsv from the committed bpe.model and fails when it differs (the oracle
re-run by tests/python/test_bpe_fixture.py).
"""

import argparse
import os
import random
import re
import sys
import tempfile

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORDS = ("THE A OF AND TO IN IS IT THAT WAS HE FOR ON ARE WITH AS I HIS THEY BE AT ONE HAVE THIS "
         "FROM OR HAD BY WORD BUT WHAT SOME WE CAN OUT OTHER WERE ALL THERE WHEN UP USE YOUR HOW "
         "SAID AN EACH SHE WHICH DO THEIR TIME IF WILL WAY ABOUT MANY THEN THEM WRITE WOULD LIKE "
         "SO THESE HER LONG MAKE THING SEE HIM TWO HAS LOOK MORE DAY COULD GO COME DID NUMBER "
         "SOUND NO MOST PEOPLE MY OVER KNOW WATER THAN CALL FIRST WHO MAY DOWN SIDE BEEN NOW FIND "
         "IT'S DON'T HELLO WORLD SPEECH RECOGNITION MODEL SERVER STREAMING OKAY").split()
CJK = ["你", "好", "的", "我", "是"]
NON_LANG = ["<NOISE>", "[LAUGHTER]"]

# Texts the tests tokenize: case, spacing, punctuation, CJK next to English, non-language symbols,
# symbols WeNet does not list (they are spelled with pieces), characters no unit covers.
CASES = [
    "hello world",
    "HELLO WORLD",
    "Hello World",
    "  speech   recognition  server  ",
    "it's okay",
    "don't look down",
    "the people who know",
    "streaming",
    "recognitions",
    "a",
    "你好",
    "你好 it's okay 的",
    "我是hello的world",
    "hello<noise>world",
    "hello <NOISE> world [laughter]",
    "<noise>",
    "{NOISE} hello",
    "<unk> hello",
    "hello, world!",
    "café",
    "你们好",
    "xyzzy quux",
]


def wenet_pieces(sp, text, non_lang_syms):
    """WeNet's BpeTokenizer.text2tokens (wenet/text/bpe_tokenizer.py + tokenize_utils.py),
    restated: strip; with a non-language symbol list, upper-case and split at [..] <..> {..}
    (symbols in the list stay whole); each other part upper-cased, split at CJK characters
    U+4E00..U+9FFF (kept as tokens), the rest encoded by sentencepiece; whitespace-only parts
    dropped."""
    line = text.strip()
    if non_lang_syms is not None:
        parts = [p for p in re.split(r"(\[[^\[\]]+\]|<[^<>]+>|{[^{}]+})", line.upper())
                 if p.strip()]
    else:
        parts = [line]
    out = []
    for part in parts:
        if part in non_lang_syms:
            out.append(part)
            continue
        for chunk in re.split("([\u4e00-\u9fff])", part.upper()):
            if not chunk.strip():
                continue
            if re.fullmatch("[\u4e00-\u9fff]", chunk):
                out.append(chunk)
            else:
                out.extend(sp.encode_as_pieces(chunk))
    return out


def read_units(path):
    units = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            tok, idx = line.split()
            units[tok] = int(idx)
    return units


def cases_tsv(sp, units, non_lang_syms):
    lines = []
    for text in CASES:
        pieces = wenet_pieces(sp, text, non_lang_syms)
        missing = [p for p in pieces if p not in units]
        result = "!" + missing[0] if missing else " ".join(str(units[p]) for p in pieces)
        lines.append("%s\t%s\n" % (text, result))
    return "".join(lines)


def sentences(n=400, seed=7):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "bpe"))
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    out = args.out
    if args.check:
        sp = spm.SentencePieceProcessor(model_file=os.path.join(out, "bpe.model"))
        units = read_units(os.path.join(out, "units.txt"))
        with open(os.path.join(out, "cases.tsv"), encoding="utf-8") as f:
            committed = f.read()
        fresh = cases_tsv(sp, units, NON_LANG)
        if fresh != committed:
            sys.stderr.write("cases.tsv differs from the oracle:\n" + fresh)
            return 1
        return 0

    os.makedirs(out, exist_ok=True)
    text = sentences()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "text")
        with open(corpus, "w", encoding="utf-8") as f:
            f.write("\n".join(text) + "\n")
        spm.SentencePieceTrainer.train(
            input=corpus, model_prefix=os.path.join(tmp, "bpe"), vocab_size=120,
            model_type="bpe", character_coverage=1.0, num_threads=1,
            normalization_rule_name="identity", minloglevel=2)
        with open(os.path.join(tmp, "bpe.model"), "rb") as f:
            model = f.read()
    with open(os.path.join(out, "bpe.model"), "wb") as f:
        f.write(model)
    sp = spm.SentencePieceProcessor(model_proto=model)
    used = sorted({p for s in text for p in sp.encode_as_pieces(s)})
    units = ["<blank>", "<unk>"] + used + CJK + NON_LANG + ["<sos/eos>"]
    with open(os.path.join(out, "units.txt"), "w", encoding="utf-8") as f:
        for i, u in enumerate(units):
            f.write("%s %d\n" % (u, i))
    with open(os.path.join(out, "non_lang_syms.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(NON_LANG) + "\n")
    with open(os.path.join(out, "cases.tsv"), "w", encoding="utf-8") as f:
        f.write(cases_tsv(sp, {u: i for i, u in enumerate(units)}, NON_LANG))
    print("wrote %s: %d pieces, %d units, %d cases" % (out, sp.get_piece_size(), len(units),
                                                        len(CASES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
