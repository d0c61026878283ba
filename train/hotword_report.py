#!/usr/bin/env python3
"""Measures hotword biasing on a labelled set, the way a user would meet it: for each utterance the
plain decode gets wrong, the words it missed (4+ letters) are given as hotwords together with five
distractors (words of other utterances, not in this one), and the biased decode is compared with
the plain one. Reports, per boost:

  recall        missed words the biased decode now has
  false         distractors that appear in the biased decode (should be ~0)
  CER / WER     of those utterances, plain and biased (collateral damage shows here)
  CER distract  every utterance decoded with five distractors only (nothing to find): the cost of
                biasing when the list does not apply

  .venv/bin/python train/hotword_report.py --set data/real_speech/asterisk_en/dev --boosts 1,2,3,5
  .venv/bin/python train/hotword_report.py --set train/work/data/dev --num 150 --plot hw.png

Boost defaults are chosen on dev sets only (docs/language-models.md).
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "train"))
from common import edit_distance  # noqa: E402


def error_rates(refs, hyps):
    """CER over the characters without spaces (a hotword fixes letters, not word gaps) and WER."""
    ce = sum(edit_distance(r.replace(" ", ""), h.replace(" ", "")) for r, h in zip(refs, hyps))
    cn = sum(len(r.replace(" ", "")) for r in refs)
    we = sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps))
    wn = sum(len(r.split()) for r in refs)
    return 100.0 * ce / max(1, cn), 100.0 * we / max(1, wn)


def read_set(d):
    ref, wav = {}, {}
    for line in open(os.path.join(d, "text"), encoding="utf-8"):
        k, _, t = line.strip().partition(" ")
        if t:
            ref[k] = t
    for line in open(os.path.join(d, "wav.scp"), encoding="utf-8"):
        k, _, p = line.strip().partition(" ")
        wav[k] = p if os.path.isabs(p) else os.path.normpath(os.path.join(d, p))
    return ref, wav


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", required=True, help="a directory with wav.scp and text")
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "models", "demo"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--num", type=int, default=0, help="first N utterances (0: all)")
    ap.add_argument("--boosts", default="1,2,3,5")
    ap.add_argument("--mode", default="attention_rescoring")
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--lm", default="none", help="u2recognize --lm ('none': without the model's LM, as the docs' tables)")
    ap.add_argument("--plot", help="draw recall / false insertions / CER against boost into this PNG")
    a = ap.parse_args()

    ref, wav = read_set(a.set)
    keys = sorted(k for k in ref if k in wav)
    if a.num:
        keys = keys[: a.num]
    exe = os.path.join(a.build, "apps", "u2recognize")

    def recognize(ks, hotwords=None, boost=None):
        cmd = [exe, "--model-dir", a.model_dir, "--quiet", "--mode", a.mode, "--beam", str(a.beam), "--lm", a.lm]
        if hotwords is not None:
            cmd += ["--hotwords", hotwords, "--hotwords-boost", str(boost)]
        r = subprocess.run(cmd + [wav[k] for k in ks], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(r.stderr)
        return [line.partition(" ")[2] for line in r.stdout.splitlines()]

    plain = dict(zip(keys, recognize(keys)))
    rng = random.Random(0)
    vocab = sorted({w for k in keys for w in ref[k].split() if len(w) >= 4})
    cases = []  # (key, missed, distractors)
    for k in keys:
        words = set(ref[k].split())
        missed = sorted(w for w in words if len(w) >= 4 and w not in plain[k].split())
        distract = [w for w in rng.sample(vocab, 12) if w not in words][:5]
        cases.append((k, missed, distract))
    with_missed = [c for c in cases if c[1]]
    print(f"{a.set}: {len(keys)} utterances, {len(with_missed)} with missed words "
          f"({sum(len(c[1]) for c in with_missed)} words)", file=sys.stderr)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        listfile = os.path.join(tmp, "hotwords.txt")
        for boost in [float(b) for b in a.boosts.split(",")]:
            hit = total = false = false_total = 0
            biased, distracted = [], []
            for i, (k, missed, distract) in enumerate(cases):
                print(f"\rboost {boost}: {i + 1}/{len(cases)}", end="", file=sys.stderr, flush=True)
                with open(listfile, "w", encoding="utf-8") as f:
                    f.write("\n".join(distract) + "\n")
                distracted.append(recognize([k], listfile, boost)[0])
                if not missed:
                    continue
                with open(listfile, "w", encoding="utf-8") as f:
                    f.write("\n".join(missed + distract) + "\n")
                out = recognize([k], listfile, boost)[0]
                biased.append(out)
                hit += sum(w in out.split() for w in missed)
                total += len(missed)
                false += sum(w in out.split() for w in distract)
                false_total += len(distract)
            print(file=sys.stderr)
            mk = [c[0] for c in with_missed]
            cer0, wer0 = error_rates([ref[k] for k in mk], [plain[k] for k in mk])
            cer1, wer1 = error_rates([ref[k] for k in mk], biased)
            cerd0, _ = error_rates([ref[k] for k in keys], [plain[k] for k in keys])
            cerd1, _ = error_rates([ref[k] for k in keys], distracted)
            rows.append((boost, hit, total, false, false_total, cer0, cer1, wer0, wer1, cerd0, cerd1))

    print("| boost | recall | false | CER plain -> biased | WER plain -> biased | CER distractors only |")
    print("|---|---|---|---|---|---|")
    for b, hit, total, false, ft, cer0, cer1, wer0, wer1, cd0, cd1 in rows:
        print(f"| {b:g} | {hit}/{total} = {100.0 * hit / max(1, total):.0f} % | {false}/{ft} | "
              f"{cer0:.2f} -> {cer1:.2f} % | {wer0:.2f} -> {wer1:.2f} % | {cd0:.2f} -> {cd1:.2f} % |")
    if a.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        bs = [r[0] for r in rows]
        ax.plot(bs, [100.0 * r[1] / max(1, r[2]) for r in rows], "o-", label="recall of missed words %")
        ax.plot(bs, [100.0 * r[3] / max(1, r[4]) for r in rows], "s-", label="distractors inserted %")
        ax.plot(bs, [r[6] for r in rows], "^-", label="CER biased %")
        ax.plot(bs, [r[10] for r in rows], "v-", label="CER, distractors only %")
        ax.set_xlabel("boost per token (natural log)")
        ax.set_title(os.path.basename(os.path.normpath(a.set)))
        ax.legend()
        fig.tight_layout()
        fig.savefig(a.plot)


if __name__ == "__main__":
    main()
