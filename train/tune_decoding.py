#!/usr/bin/env python3
"""Tune attention rescoring's ctc_weight and reverse_weight on the dev split.

WeNet recipes pick these two weights by decoding a dev set; this does the same with the PyTorch
reference (tools/u2ref). For each utterance the encoder, the CTC prefix beam search and both
attention decoders (left-to-right and right-to-left) run once; every (ctc_weight, reverse_weight)
pair then only re-ranks the same n-best list, so the whole grid costs one decoding pass.

It also prints the n-best oracle CER (the best hypothesis in each n-best list), which bounds what
any rescoring of that list can reach.

Usage: .venv/bin/python train/tune_decoding.py --model-dir models/demo/training \
           [--checkpoint X.pt] [--split dev] [--beam 10] [--json out.json]
Tune on dev only: choosing weights on a test split would overstate its accuracy.
"""
import argparse
import itertools
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import eval_ref  # noqa: E402
from u2ref.search import ctc_prefix_beam_search, rescoring_select  # noqa: E402

CTC_WEIGHTS = (0.0, 0.1, 0.3, 0.5, 0.7, 1.0)
REVERSE_WEIGHTS = (0.0, 0.3, 0.5, 0.7)


def nbest_scores(model, featset, beam, batch=16):
    """-> [(ref, [(text, ctc_score, l2r, r2l)])] for every utterance of the split."""
    out = []
    ids = sorted(range(len(featset)), key=lambda i: featset.index[i]["frames"])
    with torch.no_grad():
        for s in range(0, len(ids), batch):
            part = ids[s: s + batch]
            x, xl, _, _ = featset.collate(part)
            enc, mask = model.encode(x, xl, -1, -1)
            lens = mask.squeeze(1).sum(1)
            nbests = ctc_prefix_beam_search(model.ctc_logprobs(enc), lens, beam, model.blank_id)
            for b, i in enumerate(part):
                nb = nbests[b]
                _, _, dec = model.rescore(nb, enc[b:b + 1, :int(lens[b])], 0.0, 1.0)
                out.append((featset.index[i]["txt"],
                            [(common.ids_to_text(h), float(c), l2r, r2l)
                             for (h, c), (l2r, r2l) in zip(nb, dec)]))
            print(f"  {s + len(part)}/{len(ids)} utterances", end="\r", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return out


def grid(scored):
    """CER (%) of every (ctc_weight, reverse_weight) pair, and the n-best oracle CER."""
    table = {}
    for cw, rw in itertools.product(CTC_WEIGHTS, REVERSE_WEIGHTS):
        err = common.ErrorRate()
        for ref, nb in scored:
            idx, _ = rescoring_select([(l2r, r2l) for _, _, l2r, r2l in nb], [c for _, c, _, _ in nb], cw, rw)
            err.add(ref, nb[idx][0])
        table[(cw, rw)] = err.cer()
    oracle = common.ErrorRate()
    for ref, nb in scored:
        best = min(nb, key=lambda h: common.edit_distance(ref, h[0]))
        oracle.add(ref, best[0])
    return table, oracle.cer()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", required=True, help="directory with train.yaml and units.txt")
    ap.add_argument("--checkpoint", default=None, help="default: <model-dir>/final.pt")
    ap.add_argument("--data", default=os.path.join(common.WORK, "data"))
    ap.add_argument("--split", default="dev")
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--limit", type=int, default=0, help="first N utterances (0 = all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="", help="write the grid here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    _, model = eval_ref.load_model(a.model_dir, a.checkpoint)
    if not model.has_right_decoder():
        sys.exit("tune_decoding: the model has no right-to-left decoder; only ctc_weight would matter")
    fs = common.FeatSet(a.split, a.data, limit=a.limit)
    t0 = time.time()
    table, oracle = grid(nbest_scores(model, fs, a.beam))
    print(f"{a.split}: {len(fs)} utterances, beam {a.beam}, {time.time() - t0:.0f} s; "
          f"attention rescoring CER (%) by ctc_weight (rows) and reverse_weight (columns):")
    print("ctc \\ rev | " + " | ".join(f"{rw:5.1f}" for rw in REVERSE_WEIGHTS))
    for cw in CTC_WEIGHTS:
        print(f"{cw:9.1f} | " + " | ".join(f"{table[(cw, rw)]:5.2f}" for rw in REVERSE_WEIGHTS))
    (bcw, brw), bcer = min(table.items(), key=lambda kv: (kv[1], kv[0]))
    print(f"best: ctc_weight {bcw}, reverse_weight {brw}: CER {bcer:.2f} %; n-best oracle CER {oracle:.2f} %")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"split": a.split, "utts": len(fs), "beam": a.beam, "oracle_cer": round(oracle, 3),
                       "best": {"ctc_weight": bcw, "reverse_weight": brw, "cer": round(bcer, 3)},
                       "grid": [{"ctc_weight": cw, "reverse_weight": rw, "cer": round(c, 3)}
                                for (cw, rw), c in table.items()]}, f, indent=1)


if __name__ == "__main__":
    main()
