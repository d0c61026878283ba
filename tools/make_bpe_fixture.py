#!/usr/bin/env python3
"""Make tests/data/bpe/: a tiny sentencepiece BPE model and its WeNet-style files.

    make_bpe_fixture.py [--out tests/data/bpe] [--check | --cases]

Writes (all deterministic):
  bpe.model          a 120-piece BPE model trained on a few hundred made-up upper-case English
                     sentences (WeNet's English recipes train on upper-case transcripts)
  units.txt          WeNet's units for it: <blank> 0, <unk> 1, the pieces the training text uses
                     (sorted, as the recipes' `sort | uniq` makes them), five CJK characters (a
                     mixed Chinese + English model's units), two non-language symbols, <sos/eos>
  non_lang_syms.txt  <NOISE> and [LAUGHTER]
  cases.tsv          text<TAB>ids (space-separated) or text<TAB>!PIECE (a piece with no unit):
                     WeNet's BpeTokenizer.text2tokens + tokens2ids computed with the Python
                     sentencepiece module: the oracle for the C++ text -> pieces tokenizer
                     (src/u2/decode/bpe_tokenizer.h, tests/cpp/test_bpe_tokenizer.cc); cases where
                     WeNet would map a piece to <unk> are marked with "!" and the first such piece
  cases_no_syms.tsv  the same for a BpeTokenizer made without a non-language symbols file
--check recomputes both case files from the committed bpe.model and fails when they differ (the
oracle re-run by tests/python/test_convert_bpe.py); --cases rewrites them from the committed
bpe.model (after adding cases), leaving the model and units as they are.
"""

import argparse
import os
import random
import sys
import tempfile

import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bpe_text import wenet_pieces  # noqa: E402

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
    # Non-language symbols next to CJK characters and English, in any case, several in a row;
    # brackets that do not make a symbol are spelled.
    "你好<NOISE>hello",
    "[LAUGHTER]你好 world<noise>",
    "HeLLo<NOISE><noise>WoRLD",
    "hello [laughter",
    "<> hello",
    "我 是",
    # Python's whitespace (strip) and its full upper-casing: "ß" -> "SS", "ﬁ" -> "FI", "ı" -> "I",
    # a Greek letter that upper-cases to two.
    "\u3000hello world\u3000",
    "hello\u00a0world",
    "straße",
    "\ufb01nd the water",
    "\u0131t's okay",
    "\u1fb3",
    "\u2581hello",
]
# Without a symbols file WeNet spells "<NOISE>" with pieces like any other text.
CASES_NO_SYMS = [
    "hello world",
    "hello <NOISE> world",
    "<noise>",
    "[LAUGHTER]你好",
    "你好 it's okay 的",
]


def read_units(path):
    units = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            tok, idx = line.split()
            units[tok] = int(idx)
    return units


def cases_tsv(sp, units, non_lang_syms, cases=CASES):
    lines = []
    for text in cases:
        pieces = wenet_pieces(sp, text, non_lang_syms)
        missing = [p for p in pieces if p not in units]
        result = "!" + missing[0] if missing else " ".join(str(units[p]) for p in pieces)
        lines.append("%s\t%s\n" % (text, result))
    return "".join(lines)


def case_files(sp, units):
    return {"cases.tsv": cases_tsv(sp, units, NON_LANG),
            "cases_no_syms.tsv": cases_tsv(sp, units, None, CASES_NO_SYMS)}


def sentences(n=400, seed=7):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "bpe"))
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--cases", action="store_true")
    args = ap.parse_args(argv)
    out = args.out
    if args.check or args.cases:
        sp = spm.SentencePieceProcessor(model_file=os.path.join(out, "bpe.model"))
        units = read_units(os.path.join(out, "units.txt"))
        failed = False
        for name, fresh in case_files(sp, units).items():
            path = os.path.join(out, name)
            if args.cases:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(fresh)
                continue
            with open(path, encoding="utf-8") as f:
                committed = f.read()
            if fresh != committed:
                sys.stderr.write("%s differs from the oracle:\n%s" % (name, fresh))
                failed = True
        return 1 if failed else 0

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
    for name, text in case_files(sp, {u: i for i, u in enumerate(units)}).items():
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            f.write(text)
    print("wrote %s: %d pieces, %d units, %d + %d cases" % (out, sp.get_piece_size(), len(units),
                                                             len(CASES), len(CASES_NO_SYMS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
