#!/usr/bin/env python3
"""Re-check tests/cpp/test_error_rate.cc's expected counts with WeNet's own tools/compute-wer.py.

    check_scoring_cases.py --compute-wer /path/to/wenet/tools/compute-wer.py

The C++ scorer (src/u2/util/error_rate.h) follows compute-wer.py; the test's expected S/D/I/N
counts were taken from that script. This reads every `ExpectCounts(WenetCharErrors("ref", "hyp"),
S, D, I, N)` (and WordErrors and CharacterErrors, and the `const ErrorCounts c = ...Errors(...);` +
`ExpectCounts(c, ...)` form) from the test, writes the pairs as WeNet text files ("uttK text"), runs
the script as WeNet's recipes do (`--char=1 --v=1` for WenetCharErrors, `--char=0 --v=1` for
WordErrors) and compares its per-utterance "WER: ... N= C= S= D= I=" lines with the test.
CharacterErrors, the letter-level CER, is checked against a copy of the script with the one change
that defines it: every character it would start a --char=1 unit at, other than '<', is a unit alone
(a '<' keeps its span, so tags are still removed whole). Cases whose strings are not UTF-8 are
skipped: the script cannot read them. Exits 1 on any difference. Needs no part of the build.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRING = r'"((?:[^"\\]|\\.)*)"'
COUNTS = r"(\d+), (\d+), (\d+), (\d+)\)"
KINDS = r"(WenetChar|Character|Word)"
DIRECT = re.compile(r"ExpectCounts\(" + KINDS + r"Errors\(" + STRING + ", " + STRING + r"\), " + COUNTS)
NAMED = re.compile(r"const ErrorCounts (\w+) = " + KINDS + r"Errors\(" + STRING + ", " + STRING + r"\);")
# The --char=1 rules made letter-level (ScoringUnit::kLetter): inserted where characterize() is about
# to start a multi-character unit. characterize() gets the whole line: its first unit, the utterance
# key, stays whole.
LETTER_ANCHOR = "            sep = ' '\n"
LETTER_PATCH = ("            if res and char != '<':\n"
                "                res.append(char)\n"
                "                i += 1\n"
                "                continue\n")


def c_string(s):
    """The bytes of a C++ string literal's body (the escapes the test uses: \\xHH, \\uHHHH, \\t, \\n, \\\\, \\")."""
    out, i = bytearray(), 0
    while i < len(s):
        if s[i] != "\\":
            out += s[i].encode()
            i += 1
        elif s[i + 1] == "x":
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        elif s[i + 1] == "u":
            out += chr(int(s[i + 2:i + 6], 16)).encode()
            i += 6
        else:
            out += {"t": b"\t", "n": b"\n", "\\": b"\\", '"': b'"'}[s[i + 1]]
            i += 2
    return bytes(out)


def cases(source):
    found = [(m.group(1), m.group(2), m.group(3), tuple(map(int, m.groups()[3:]))) for m in DIRECT.finditer(source)]
    for m in NAMED.finditer(source):
        after = re.search(r"ExpectCounts\(" + m.group(1) + ", " + COUNTS, source[m.end():])
        if after:
            found.append((m.group(2), m.group(3), m.group(4), tuple(map(int, after.groups()))))
    return found


def score(script, python, pairs, char):
    """compute-wer.py's (S, D, I, N) per pair."""
    with tempfile.TemporaryDirectory() as d:
        ref, hyp = os.path.join(d, "ref"), os.path.join(d, "hyp")
        with open(ref, "w", encoding="utf-8") as f:
            f.writelines(f"utt{k} {r}\n" for k, (r, _) in enumerate(pairs))
        with open(hyp, "w", encoding="utf-8") as f:
            f.writelines(f"utt{k} {h}\n" for k, (_, h) in enumerate(pairs))
        out = subprocess.run([python, script, f"--char={char}", "--v=1", ref, hyp], capture_output=True, text=True,
                             check=True, cwd=d).stdout
    rows = re.findall(r"^WER: [\d.]+ % N=(\d+) C=\d+ S=(\d+) D=(\d+) I=(\d+)", out, re.M)
    if len(rows) != len(pairs):
        sys.exit(f"compute-wer.py printed {len(rows)} utterances for {len(pairs)} pairs:\n{out}")
    return [(int(s), int(d), int(i), int(n)) for n, s, d, i in rows]


def letter_level(script, d):
    """A copy of compute-wer.py in folder d that scores with the letter-level units."""
    with open(script, encoding="utf-8") as f:
        source = f.read()
    if source.count(LETTER_ANCHOR) != 1:
        sys.exit(f"{script}: cannot find where characterize() starts a unit ({LETTER_ANCHOR.strip()!r})")
    path = os.path.join(d, "compute-wer-letters.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(source.replace(LETTER_ANCHOR, LETTER_PATCH + LETTER_ANCHOR))
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compute-wer", required=True, help="WeNet's tools/compute-wer.py")
    ap.add_argument("--python", default=sys.executable, help="the Python to run it with")
    ap.add_argument("--test", default=os.path.join(ROOT, "tests", "cpp", "test_error_rate.cc"))
    a = ap.parse_args()
    with open(a.test, encoding="utf-8") as f:
        found = cases(f.read())
    bad = skipped = 0
    with tempfile.TemporaryDirectory() as d:
        letters = letter_level(a.compute_wer, d)
        for kind, script, char in (("WenetChar", a.compute_wer, 1), ("Word", a.compute_wer, 0),
                                   ("Character", letters, 1)):
            todo = []
            for k, r, h, want in found:
                if k != kind:
                    continue
                try:
                    todo.append((c_string(r).decode("utf-8"), c_string(h).decode("utf-8"), want))
                except UnicodeDecodeError:
                    skipped += 1
            got = score(script, a.python, [(r, h) for r, h, _ in todo], char)
            for (r, h, want), g in zip(todo, got):
                ok = g == want
                bad += not ok
                what = f"--char={char}" if script == a.compute_wer else "letters"
                print(f"{'ok' if ok else 'DIFFERS':7s} {what:8s} {r!r} / {h!r}: script S D I N = {g}, test {want}")
    print(f"{len(found) - skipped} cases checked, {bad} differ; {skipped} not UTF-8 (skipped)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
