#!/usr/bin/env python3
"""Compare converted models (and beam widths) on one split with the C++ engine, utterance by utterance.

A candidate checkpoint that scores 4.1 % against the shipped model's 4.2 % on 300 dev utterances
may simply have been lucky. So besides each model's CER and WER, this prints, for every model
against the first one, how many utterances got better or worse and a 95 % paired bootstrap
interval of the CER difference (utterances resampled with replacement, the same draw for both
models): an interval that excludes 0 is a difference the split can tell apart. With --beams each
model also decodes at each CTC prefix beam width (the beam modes only), to pick model.json's
beam_size on dev.

Usage: .venv/bin/python train/compare_models.py models/demo /tmp/candidate [--split dev]
           [--modes ctc_greedy attention_rescoring] [--beams 10 20] [--build build] [--limit N]
A model directory is a converted model (finalize.py --out, or tools/convert). Compare on dev:
picking a model by its test score would overstate its test accuracy.
"""
import argparse
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def per_utterance_errors(refs, hyps, rate=None):
    """-> ([character errors], [reference characters]) in refs' order, also counted into `rate` (an
    ErrorRate) when given; a missing hypothesis is empty."""
    rate = rate if rate is not None else common.ErrorRate()
    pairs = [rate.add(ref, hyps.get(k, "")) for k, ref in refs.items()]
    return [e for e, _ in pairs], [n for _, n in pairs]


def paired_bootstrap(errors_a, errors_b, lengths, rounds=1000, seed=0):
    """95 % interval of CER(b) - CER(a) in percentage points, resampling utterances together."""
    rng = random.Random(seed)
    n = len(lengths)
    diffs = []
    for _ in range(rounds):
        idx = [rng.randrange(n) for _ in range(n)]
        chars = sum(lengths[i] for i in idx)
        diffs.append(100.0 * sum(errors_b[i] - errors_a[i] for i in idx) / max(1, chars))
    diffs.sort()
    return diffs[int(0.025 * (rounds - 1))], diffs[int(0.975 * (rounds - 1))]


def better_worse(errors_a, errors_b):
    """-> (utterances where b has fewer errors than a, utterances where it has more)."""
    return (sum(1 for x, y in zip(errors_a, errors_b) if y < x),
            sum(1 for x, y in zip(errors_a, errors_b) if y > x))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="converted model directories; the first is the baseline")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--data", default=os.path.join(common.WORK, "data"))
    ap.add_argument("--modes", nargs="+", default=["ctc_greedy", "attention_rescoring"],
                    choices=("ctc_greedy", "ctc_prefix_beam_search", "attention_rescoring"))
    ap.add_argument("--beams", type=int, nargs="+", default=[0],
                    help="CTC prefix beam widths to try in the beam modes (0 = the model's model.json)")
    ap.add_argument("--build", default=os.environ.get("U2_BUILD_DIR", "build"))
    ap.add_argument("--limit", type=int, default=0, help="first N utterances (0 = all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds")
    a = ap.parse_args()

    binary = os.path.join(common.REPO, a.build, "apps", "u2recognize")
    refs = common.read_table(os.path.join(a.data, a.split, "text"), a.limit)
    with tempfile.TemporaryDirectory() as work:
        scp = os.path.join(work, "wav.scp")
        common.write_subset_scp(os.path.join(a.data, a.split, "wav.scp"), refs, scp)
        for mode in a.modes:
            print(f"{a.split} ({len(refs)} utterances), {mode}:", flush=True)
            base = None
            beams = [0] if mode == "ctc_greedy" else a.beams
            for i, (model, beam) in enumerate((m, b) for m in a.models for b in beams):
                extra = ["--mode", mode] + (["--beam", str(beam)] if beam else [])
                hyps, _ = common.run_u2recognize(binary, model, scp, os.path.join(work, f"{i}.{mode}.hyp"),
                                                 a.threads, extra)
                er = common.ErrorRate()
                errors, lengths = per_utterance_errors(refs, hyps, er)
                name = model + (f" beam {beam}" if beam else "")
                line = f"  {name:40s} CER {er.cer():6.2f} %  WER {er.wer():6.2f} %"
                if base is None:
                    base = errors
                else:
                    lo, hi = paired_bootstrap(base, errors, lengths, a.bootstrap)
                    better, worse = better_worse(base, errors)
                    line += (f"  vs first: {100.0 * (sum(errors) - sum(base)) / max(1, sum(lengths)):+.2f} points, "
                             f"95 % CI [{lo:+.2f}, {hi:+.2f}], {better} utts better, {worse} worse")
                print(line, flush=True)


if __name__ == "__main__":
    main()
