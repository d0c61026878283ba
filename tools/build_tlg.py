#!/usr/bin/env python3
"""Builds a TLG decoding graph for u2serve's WFST search (docs/language-models.md), as WeNet's
runtime decodes with one, from a model's units and an ARPA language model:

  .venv/bin/python tools/build_tlg.py --units my_model/units.txt --lm lm.arpa --out my_model/tlg

  T  the CTC topology: maps frame labels (blank, repeats) to tokens; for every token a state,
     blank loops, repeats absorbed, and a direct arc to every other token (a repeat of the same
     token needs a blank between, so "a a" is never read as "aa")
  L  the lexicon: each LM word spelled with the model's units; a character model's "▁"
     separates words, a BPE model's "▁"-prefixed piece starts one. A BPE model with its
     sentencepiece model (bpe.model beside units.txt, or --bpe-model) spells words as WeNet's
     BpeTokenizer does (tools/bpe_text.py; the engine's hotwords and LM words spell them the same
     way); otherwise greedy longest match, as SymbolTable::Tokenize without one. Words the units
     cannot spell are left out (counted)
  G  the LM as an acceptor (kaldilm's arpa2fst, Kaldi's tool; "#0" on back-off arcs)

  LG  = minimize(determinize(L o G)), "#0" then relabelled to epsilon
  TLG = T o LG, input labels sorted

Writes OUT/TLG.fst (OpenFst binary, input labels = token id + 1, 0 = epsilon; output labels =
word ids), OUT/words.txt (word symbol table) and OUT/units.txt (a copy, to check the model
matches). Needs OpenFst's command-line tools (Debian libfst-tools) and PyPI kaldilm.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MARKER = "\u2581"


def read_units(path):
    units = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 2:
                sys.exit(f"{path}:{n}: expected 'token id', got {line.strip()!r}")
            units[parts[0]] = int(parts[1])
    return units


def arpa_words(path):
    words, section = [], None
    with open(path, encoding="utf-8") as f:
        for line in f:
            s = line.strip()
            if s.startswith("\\1-grams:"):
                section = 1
            elif s.startswith("\\"):
                if section == 1:
                    break
            elif section == 1 and s:
                fields = s.split()
                if len(fields) >= 2:
                    words.append(fields[1])
    if not words:
        sys.exit(f"{path}: no 1-grams (not an ARPA file?)")
    return words


class Speller:
    """Spells words with the model's units: with a sentencepiece model (sp), WeNet's BPE pieces
    (non_lang_syms: its symbol list, or None); otherwise greedy longest match, lower-cased when the
    units are."""

    def __init__(self, units, sp=None, non_lang_syms=None):
        self.units = units
        self.sp = sp
        self.non_lang_syms = non_lang_syms
        self.pieces = {t: i for t, i in units.items() if not (t.startswith("<") and t.endswith(">"))}
        self.longest = max(len(t) for t in self.pieces)
        self.marker_unit = MARKER in units
        self.marker_prefix = not self.marker_unit and any(t.startswith(MARKER) for t in units)
        self.lower = not any(c.isupper() for t in self.pieces for c in t)
        if not self.marker_unit and not self.marker_prefix:
            sys.exit("build_tlg: these units mark no word boundary ('▁' unit or '▁'-prefixed pieces); "
                     "TLG graphs are built for character models with '▁' and BPE models")

    def spell(self, word):
        if self.sp is not None:
            from bpe_text import wenet_pieces
            ids = [self.units.get(p) for p in wenet_pieces(self.sp, word, self.non_lang_syms)]
            return None if not ids or None in ids else ids
        text = word.lower() if self.lower else word
        if self.marker_prefix:
            text = MARKER + text
        out, i = [], 0
        while i < len(text):
            for n in range(min(self.longest, len(text) - i), 0, -1):
                piece = text[i:i + n]
                if piece in self.pieces:
                    out.append(self.pieces[piece])
                    i += n
                    break
            else:
                return None
        return out


def make_speller(units, a):
    """The Speller for --units, with the BPE model and symbols that --bpe-model / --non-lang-syms
    or the model folder give."""
    folder = os.path.dirname(os.path.abspath(a.units))
    bpe = a.bpe_model or os.path.join(folder, "bpe.model")
    if a.bpe_model == "none" or not os.path.exists(bpe):
        if a.bpe_model and a.bpe_model != "none":
            sys.exit(f"build_tlg: --bpe-model {a.bpe_model}: no such file")
        return Speller(units)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    try:
        sp.load(bpe)
    except (OSError, RuntimeError) as e:
        sys.exit(f"build_tlg: {bpe}: sentencepiece cannot load it ({e})")
    syms_path = a.non_lang_syms or os.path.join(folder, "non_lang_syms.txt")
    syms = None
    if os.path.exists(syms_path):
        with open(syms_path, encoding="utf-8") as f:
            syms = [line.strip() for line in f if line.strip()]
    elif a.non_lang_syms:
        sys.exit(f"build_tlg: --non-lang-syms {a.non_lang_syms}: no such file")
    print(f"build_tlg: spelling words with {bpe}" + (f" and {syms_path}" if syms is not None else ""),
          file=sys.stderr)
    return Speller(units, sp, syms)


def write_t(path, units, blank):
    """T in OpenFst text form over labels token id + 1 (blank too); outputs tokens, blank -> eps."""
    tokens = [i for t, i in units.items() if i != blank and not t.startswith("#")]
    b = blank + 1
    lines = [f"0 0 {b} 0"]
    state = {k: n + 1 for n, k in enumerate(tokens)}
    for k in tokens:
        s = state[k]
        lines.append(f"0 {s} {k + 1} {k + 1}")   # emit k
        lines.append(f"{s} {s} {k + 1} 0")      # k repeated: absorbed
        lines.append(f"{s} 0 {b} 0")            # a blank ends k
        for j in tokens:
            if j != k:
                lines.append(f"{s} {state[j]} {j + 1} {j + 1}")  # straight on to another token
    lines += ["0"] + [str(state[k]) for k in tokens]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return len(tokens) + 1


def write_l(path, words, word_ids, speller, disambig_in, disambig0):
    """L over (token id + 1) -> word id. Character models: 0 -spelling-> 1 -▁-> 0; BPE: 0 -> 0."""
    sep = speller.units.get(MARKER)
    lines, next_state, skipped = [], 2, 0
    end = 1 if speller.marker_unit else 0
    for w in words:
        spelling = speller.spell(w)
        if not spelling:
            skipped += 1
            continue
        src = 0
        for n, tok in enumerate(spelling):
            dst = end if n == len(spelling) - 1 else next_state
            if dst == next_state:
                next_state += 1
            lines.append(f"{src} {dst} {tok + 1} {word_ids[w] if n == 0 else 0}")
            src = dst
    if speller.marker_unit:
        lines.append(f"1 0 {sep + 1} 0")
        lines.append("1")
    lines.append(f"0 0 {disambig_in} {disambig0}")  # G's back-off disambiguator passes through
    lines.append("0")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return skipped


def run(cmd, **kw):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"build_tlg: `{cmd}` failed:\n{r.stderr}")
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--units", required=True, help="the model's units.txt")
    ap.add_argument("--lm", required=True, help="ARPA LM (tools/build_lm.py --units makes one)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--bpe-model", help="the model's sentencepiece model (default: bpe.model beside --units, if "
                                        "there); 'none' spells greedily with the units")
    ap.add_argument("--non-lang-syms", help="WeNet's non-language symbols file (default: non_lang_syms.txt "
                                            "beside --units, if there), used with the BPE model")
    a = ap.parse_args()
    for tool in ("fstcompile", "fstcompose", "fstdeterminize", "fstminimize", "fstrelabel", "fstarcsort"):
        if shutil.which(tool) is None:
            sys.exit(f"build_tlg: {tool} not found (apt-get install libfst-tools)")
    import kaldilm

    units = read_units(a.units)
    blank = units.get("<blank>", 0)
    speller = make_speller(units, a)
    words = [w for w in arpa_words(a.lm) if w not in ("<s>", "</s>", "<eps>") and not w.startswith("#")]
    os.makedirs(a.out, exist_ok=True)
    # Word ids: <eps> 0, the words, <unk> among them if the LM has it, then #0 <s> </s>.
    word_ids = {"<eps>": 0}
    for w in words:
        word_ids.setdefault(w, len(word_ids))
    for w in ("#0", "<s>", "</s>"):
        word_ids[w] = len(word_ids)
    with open(os.path.join(a.out, "words.txt"), "w", encoding="utf-8") as f:
        for w, i in word_ids.items():
            f.write(f"{w} {i}\n")
    shutil.copyfile(a.units, os.path.join(a.out, "units.txt"))
    # L reads #0 with a label above every token's and writes G's #0, so the composition keeps
    # the back-off arcs apart until LG is determinized; then it becomes epsilon.
    disambig0 = word_ids["#0"]
    disambig_in = max(units.values()) + 2
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        p = lambda name: os.path.join(tmp, name)  # noqa: E731
        print("build_tlg: G (arpa2fst)", file=sys.stderr, flush=True)
        kaldilm.arpa2fst(a.lm, p("G.fst"), disambig_symbol="#0", read_symbol_table=os.path.join(a.out, "words.txt"))
        print("build_tlg: L", file=sys.stderr, flush=True)
        skipped = write_l(p("L.txt"), [w for w in words if w != "<unk>"], word_ids, speller, disambig_in, disambig0)
        if skipped:
            print(f"build_tlg: {skipped} LM words cannot be spelled with the units (left out)", file=sys.stderr)
        run(f"fstcompile {p('L.txt')} | fstarcsort --sort_type=olabel > {p('L.fst')}")
        print("build_tlg: LG = min(det(L o G))", file=sys.stderr, flush=True)
        run(f"fstarcsort --sort_type=ilabel {p('G.fst')} {p('Gs.fst')}")
        run(f"fstcompose {p('L.fst')} {p('Gs.fst')} | fstdeterminize | fstminimize > {p('LG_d.fst')}")
        with open(p("relabel.txt"), "w") as f:
            f.write(f"{disambig_in} 0\n")
        run(f"fstrelabel --relabel_ipairs={p('relabel.txt')} {p('LG_d.fst')} | fstarcsort --sort_type=ilabel > {p('LG.fst')}")
        print("build_tlg: T, TLG = T o LG", file=sys.stderr, flush=True)
        write_t(p("T.txt"), units, blank)
        run(f"fstcompile {p('T.txt')} | fstarcsort --sort_type=olabel > {p('T.fst')}")
        run(f"fstcompose {p('T.fst')} {p('LG.fst')} | fstarcsort --sort_type=ilabel > {os.path.join(a.out, 'TLG.fst')}")
        info = run(f"fstinfo {os.path.join(a.out, 'TLG.fst')}").stdout
    states = next(line.split()[-1] for line in info.splitlines() if line.startswith("# of states"))
    arcs = next(line.split()[-1] for line in info.splitlines() if line.startswith("# of arcs"))
    print(f"build_tlg: {a.out}/TLG.fst: {states} states, {arcs} arcs, {len(word_ids) - 4} words "
          f"({time.time() - t0:.1f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
