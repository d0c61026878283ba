#!/usr/bin/env python3
"""How much a word's confidence means: the engine's word confidences (u2recognize --format json:
the CTC posterior at each token's spike, averaged over the word) against whether the word is right,
on a dev set. Each hypothesis word is aligned to the reference (Levenshtein over words); a word is
right when the alignment matches it to an identical reference word. Prints, per confidence bin,
how many words fall in it and the share that are right (a reliability table), and the mean
confidence of right and wrong words.

Usage: .venv/bin/python train/confidence_report.py --list data/real_speech/asterisk_en/dev [--build build]
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

BINS = [0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0001]


def aligned_right(ref, hyp):
    """For each hyp word, whether the best word alignment matches it to an equal reference word."""
    n, m = len(ref), len(hyp)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]))
    right = [False] * m
    i, j = n, m
    while i > 0 and j > 0:
        if d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            right[j - 1] = ref[i - 1] == hyp[j - 1]
            i, j = i - 1, j - 1
        elif d[i][j] == d[i - 1][j] + 1:
            i -= 1
        else:
            j -= 1
    return right


def reliability(pairs):
    """[(low, high, words, share right)] over BINS for (confidence, right) pairs."""
    rows = []
    for lo, hi in zip(BINS, BINS[1:]):
        inside = [r for c, r in pairs if lo <= c < hi]
        rows.append((lo, min(hi, 1.0), len(inside), sum(inside) / len(inside) if inside else float("nan")))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", required=True, help="folder with wav.scp and text")
    ap.add_argument("--model", default=os.path.join(common.REPO, "models", "demo"))
    ap.add_argument("--build", default=os.environ.get("U2_BUILD_DIR", "build"))
    args = ap.parse_args()
    refs = common.read_table(os.path.join(args.list, "text"))
    proc = subprocess.run([os.path.join(common.REPO, args.build, "apps", "u2recognize"), "--model-dir", args.model,
                           "--wav-scp", os.path.join(args.list, "wav.scp"), "--format", "json", "--quiet"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    pairs = []
    for line in proc.stdout.splitlines():
        doc = json.loads(line)
        words = [w for s in doc["segments"] for w in s["words"]]
        right = aligned_right(refs[doc["key"]].split(), [w["word"] for w in words])
        pairs += [(w["confidence"], r) for w, r in zip(words, right)]
    print(f"{len(pairs)} words, {sum(r for _, r in pairs) / max(1, len(pairs)) * 100:.1f} % right")
    print("| confidence | words | right |\n|---|---|---|")
    for lo, hi, n, share in reliability(pairs):
        print(f"| {lo:.2f} - {hi:.2f} | {n} | {share * 100:.1f} % |" if n else f"| {lo:.2f} - {hi:.2f} | 0 | - |")
    right = [c for c, r in pairs if r]
    wrong = [c for c, r in pairs if not r]
    print(f"mean confidence: right words {sum(right) / max(1, len(right)):.3f}, "
          f"wrong words {sum(wrong) / max(1, len(wrong)):.3f}")


if __name__ == "__main__":
    main()
