#!/usr/bin/env python3
"""Character/word error rates of a WeNet-layout model with the PyTorch reference (tools/u2ref).

Reads a model directory with train.yaml, final.pt (a plain state_dict) and units.txt, and the
cached fbank features of the test splits (train/work/data/<split>/feats.npy, from feats.py;
dither 0, no noise). The encoder runs once per batch; all three WeNet decoding modes are
computed from the same encoder output:
  ctc_greedy_search, ctc_prefix_beam_search (beam 10), attention_rescoring (beam 10,
  ctc_weight / reverse_weight from train.yaml model_conf unless given).
CER counts characters including the spaces between words; WER counts words.

Usage: .venv/bin/python train/eval_ref.py --model-dir train/work/export \
           [--splits test test_heldout_voice] [--chunk -1] [--limit 0] [--json out.json]
"""
import argparse
import json
import os
import sys
import time

import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from u2ref.model import U2Model  # noqa: E402
from u2ref.search import ctc_greedy_search, ctc_prefix_beam_search  # noqa: E402

MODES = ("ctc_greedy_search", "ctc_prefix_beam_search", "attention_rescoring")


def load_model(model_dir, checkpoint=None):
    with open(os.path.join(model_dir, "train.yaml")) as f:
        cfg = yaml.safe_load(f)
    sd = common.load_checkpoint(checkpoint or os.path.join(model_dir, "final.pt"))
    if "model" in sd and isinstance(sd["model"], dict):  # a training checkpoint (train.py)
        sd = sd["model"]
    return cfg, U2Model.from_checkpoint(cfg, sd)


def evaluate(model, featset, beam, ctc_weight, reverse_weight, chunk, batch=16, log=None):
    errs = {m: common.ErrorRate() for m in MODES}
    hyps_out = {}
    ids = sorted(range(len(featset)), key=lambda i: featset.index[i]["frames"])
    with torch.no_grad():
        for s in range(0, len(ids), batch):
            part = ids[s: s + batch]
            x, xl, _, _ = featset.collate(part)
            enc, mask = model.encode(x, xl, chunk, -1)
            lens = mask.squeeze(1).sum(1)
            logp = model.ctc_logprobs(enc)
            greedy = ctc_greedy_search(logp, lens, model.blank_id)
            nbests = ctc_prefix_beam_search(logp, lens, beam, model.blank_id)
            for b, i in enumerate(part):
                nb = nbests[b]
                idx, _, _ = model.rescore(nb, enc[b:b + 1, :int(lens[b])], ctc_weight, reverse_weight)
                ref = featset.index[i]["txt"]
                hy = {"ctc_greedy_search": greedy[b], "ctc_prefix_beam_search": list(nb[0][0]),
                      "attention_rescoring": list(nb[idx][0])}
                key = featset.index[i]["key"]
                hyps_out[key] = {"ref": ref}
                for m in MODES:
                    text = common.ids_to_text(hy[m])
                    errs[m].add(ref, text)
                    hyps_out[key][m] = text
            if log and (s // batch) % 10 == 0:
                log(f"  {s + len(part)}/{len(ids)}")
    return errs, hyps_out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--checkpoint", default=None, help="default: <model-dir>/final.pt")
    ap.add_argument("--data", default=os.path.join(common.WORK, "data"))
    ap.add_argument("--splits", nargs="+", default=["test", "test_heldout_voice"])
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--ctc-weight", type=float, default=None)
    ap.add_argument("--reverse-weight", type=float, default=None)
    ap.add_argument("--chunk", type=int, default=-1, help="decoding_chunk_size (-1 = full context)")
    ap.add_argument("--limit", type=int, default=0, help="first N utterances of each split (0 = all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="", help="write results (and hypotheses) here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg, model = load_model(a.model_dir, a.checkpoint)
    mc = cfg.get("model_conf", {})
    cw = mc.get("ctc_weight", 0.3) if a.ctc_weight is None else a.ctc_weight
    rw = mc.get("reverse_weight", 0.0) if a.reverse_weight is None else a.reverse_weight
    results = {"ctc_weight": cw, "reverse_weight": rw, "beam": a.beam, "chunk": a.chunk, "splits": {}}
    for split in a.splits:
        fs = common.FeatSet(split, a.data, limit=a.limit)
        t0 = time.time()
        errs, hyps = evaluate(model, fs, a.beam, cw, rw, a.chunk)
        r = {m: {"cer": round(e.cer(), 2), "wer": round(e.wer(), 2)} for m, e in errs.items()}
        r["utts"] = len(fs)
        r["hours"] = round(fs.hours(), 3)
        r["seconds"] = round(time.time() - t0, 1)
        results["splits"][split] = dict(r, hyps=hyps)
        print(f"{split} ({len(fs)} utts, {fs.hours():.2f} h, chunk {a.chunk}, {r['seconds']} s):", flush=True)
        for m in MODES:
            print(f"  {m:24s} CER {r[m]['cer']:6.2f} %  WER {r[m]['wer']:6.2f} %", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
