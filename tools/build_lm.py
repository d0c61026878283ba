#!/usr/bin/env python3
"""Builds an ARPA n-gram LM (modified Kneser-Ney) from plain text, offline, for u2serve's LM fusion
(docs/language-models.md).

  python3 tools/build_lm.py --text corpus.txt --order 3 --out lm.arpa
  python3 tools/build_lm.py --text a.txt --text b.txt --order 4 --prune 1e-8 --out lm.arpa
  python3 tools/build_lm.py --text corpus.txt --units models/demo/units.txt --out lm.arpa

Text: one sentence a line; it is lower-cased when the model's units are (--units), and lines with
characters the units cannot spell are dropped (with a count), so every word of the LM can be
spelled by the model. Counting, discounting and entropy pruning are PyPI `kaldingram` (the k2
team's pure-Python port of Kaldi's/SRILM's recipes); this script only prepares the text and runs it.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

MARKER = "\u2581"


def unit_chars(path):
    """The characters a character-unit table spells words with (None: not a character table)."""
    chars = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) != 2 or parts[0].startswith("<"):
                continue
            token = parts[0].replace(MARKER, "")
            chars.update(token)
    return chars


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--text", action="append", required=True, help="text file (repeatable)")
    ap.add_argument("--order", type=int, default=3, choices=range(1, 6))
    ap.add_argument("--prune", type=float, default=0.0,
                    help="entropy pruning threshold (relative perplexity change); 0: none")
    ap.add_argument("--units", help="the model's units.txt: keep only lines it can spell")
    ap.add_argument("--min-count", type=int, default=0,
                    help="drop n-grams (order >= 2) seen fewer than this many times")
    ap.add_argument("--unk-log10", type=float, default=-10.0,
                    help="log10 P(<unk>) given to words outside the LM (-10, chosen on the synthetic dev set: "
                         "docs/language-models.md); nan: leave <unk> out (KenLM and u2serve then use -100)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    chars = unit_chars(args.units) if args.units else None
    lower = chars is not None and not any(c.isupper() for c in chars)
    kept = dropped = 0
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as out:
            for path in args.text:
                with open(path, encoding="utf-8", errors="replace") as f:
                    for line in f:
                        s = " ".join(line.split())
                        if lower:
                            s = s.lower()
                        if not s:
                            continue
                        if chars is not None and any(c not in chars for c in s.replace(" ", "")):
                            dropped += 1
                            continue
                        out.write(s + "\n")
                        kept += 1
        print(f"build_lm: {kept} sentences" + (f", {dropped} dropped (characters outside the units)"
                                                if dropped else ""), file=sys.stderr)
        if kept == 0:
            raise SystemExit("build_lm: no text left to build an LM from")
        order = args.order
        while True:
            train(corpus, order, args, tmp)
            dead = zero_probability_order(args.out)
            if dead is None or order == 1:
                break
            # Modified Kneser-Ney discounts every n-gram seen once by its full count when the text
            # has no n-gram of that order seen twice, which leaves them all at probability zero
            # (-99): a text this small supports no higher order.
            print(f"build_lm: every {dead}-gram has probability zero (too little text for order {order}); "
                  f"building order {dead - 1}", file=sys.stderr)
            order = dead - 1
    if args.unk_log10 is None or args.unk_log10 == args.unk_log10:  # not NaN
        add_unk(args.out, args.unk_log10)
    with open(args.out, encoding="utf-8") as f:
        counts = [line.strip() for line in f if line.startswith("ngram ")]
        print("build_lm: " + ", ".join(counts) + f" -> {args.out}", file=sys.stderr)


def train(corpus, order, args, tmp):
    raw = args.out if args.prune <= 0 else os.path.join(tmp, "raw.arpa")
    cmd = [os.path.join(os.path.dirname(sys.executable), "kaldingram"), "train",
           "--ngram-order", str(order), "--text", corpus, "--lm", raw, "--verbose", "5"]
    for n in range(2, order + 1):
        if args.min_count > 1:
            cmd += [f"--gt{n}min", str(args.min_count)]
    subprocess.run(cmd, check=True)
    if args.prune > 0:
        subprocess.run([cmd[0], "prune", "--threshold", str(args.prune), "--lm", raw,
                        "--write-lm", args.out, "--verbose", "5", "--encoding", "utf-8"], check=True)


def zero_probability_order(path):
    """The lowest order >= 2 whose n-grams all have probability zero (log10 <= -99), or None."""
    order, total, dead = 0, {}, {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"\\(\d+)-grams:", line)
            if m:
                order = int(m.group(1))
                continue
            if line.startswith("\\") or not line.strip() or order < 2:
                continue
            total[order] = total.get(order, 0) + 1
            if float(line.split()[0]) <= -98.5:
                dead[order] = dead.get(order, 0) + 1
    for n in sorted(total):
        if dead.get(n, 0) == total[n]:
            return n
    return None


def add_unk(path, log10p):
    """Adds a "<unk>" 1-gram (the counting tools leave it out): a word the LM does not know is then
    as likely as its rarest word (or `log10p`), not impossible."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    start = lines.index("\\1-grams:")
    end = start + 1
    lowest = 0.0
    while end < len(lines) and lines[end].strip() and not lines[end].startswith("\\"):
        fields = lines[end].split()
        if fields[1] == "<unk>":
            return
        if fields[1] not in ("<s>", "</s>"):
            lowest = min(lowest, float(fields[0]))
        end += 1
    lines.insert(end, f"{lowest if log10p is None else log10p:.7f}\t<unk>")
    for i, line in enumerate(lines):
        if line.startswith("ngram 1="):
            lines[i] = f"ngram 1={int(line.split('=')[1]) + 1}"
            break
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
