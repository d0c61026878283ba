#!/usr/bin/env python3
"""Builds a training split that mixes the cached features of several others, so one run can hear
several recipes in chosen amounts (e.g. the espeak-ng technical-text recipe the synthetic dev set
comes from, next to the multi-synthesizer recipe that moves real speech).

    .venv/bin/python train/mix_data.py --out train/work/data19 \
        --part train/work/data19e/train --part train/work/data18/train:9000 \
        --link dev=train/work/data/dev --link real_dev=train/work/data18/real_dev

Each --part is FOLDER[:N]: a split folder written by feats.py (feats.npy, feats.jsonl, data.jsonl)
and, with N, a seeded random N of its utterances (all without). The output's train/ holds the
features copied into one feats.npy, feats.jsonl/data.jsonl/text with each utterance's source
folder, and global_cmvn over the mix (train.py --init keeps the statistics the weights learnt with;
a run from scratch uses these). --link NAME=FOLDER makes out/NAME a link, for the evaluation
splits train.py reads beside train/.
"""
import argparse
import json
import os
import random

import numpy as np



def parse_part(spec):
    folder, _, num = spec.partition(":")
    if not os.path.isfile(os.path.join(folder, "feats.jsonl")):
        raise SystemExit(f"--part {spec}: no feats.jsonl in {folder} (run feats.py first)")
    return folder, int(num) if num else 0


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="data folder to write (its train/ split)")
    ap.add_argument("--part", action="append", required=True, help="FOLDER[:N], repeatable")
    ap.add_argument("--link", action="append", default=[], help="NAME=FOLDER: out/NAME -> FOLDER")
    ap.add_argument("--seed", type=int, default=19)
    a = ap.parse_args()

    parts = [parse_part(p) for p in a.part]
    rng = random.Random(a.seed)
    chosen = []  # (folder, feats index rows, data.jsonl rows by key)
    for folder, num in parts:
        index = read_jsonl(os.path.join(folder, "feats.jsonl"))
        if num > len(index):
            raise SystemExit(f"--part {folder}:{num}: it has only {len(index)} utterances")
        if num:
            index = [index[i] for i in sorted(rng.sample(range(len(index)), num))]
        meta_path = os.path.join(folder, "data.jsonl")
        meta = {r["key"]: r for r in read_jsonl(meta_path)} if os.path.exists(meta_path) else {}
        chosen.append((folder, index, meta))

    split_dir = os.path.join(a.out, "train")
    os.makedirs(split_dir, exist_ok=True)
    total = sum(r["frames"] for _, index, _ in chosen for r in index)
    dim = np.load(os.path.join(chosen[0][0], "feats.npy"), mmap_mode="r").shape[1]
    feats = np.lib.format.open_memmap(os.path.join(split_dir, "feats.npy"), mode="w+", dtype=np.float16,
                                      shape=(total, dim))
    # Sums in float64 over every frame: the statistics feats.py writes for one split.
    s1, s2 = np.zeros(dim), np.zeros(dim)
    offset = 0
    with open(os.path.join(split_dir, "feats.jsonl"), "w") as fi, \
            open(os.path.join(split_dir, "data.jsonl"), "w") as fd, \
            open(os.path.join(split_dir, "text"), "w") as ft:
        for folder, index, meta in chosen:
            # Keys get the part's data folder name in front: synth.py numbers every recipe's
            # utterances from its --start, so two parts can both hold a train_040000.
            tag = os.path.basename(os.path.dirname(os.path.abspath(folder)))
            src = np.load(os.path.join(folder, "feats.npy"), mmap_mode="r")
            if src.shape[1] != dim:
                raise SystemExit(f"{folder}: {src.shape[1]} feature bins, the first part has {dim}")
            for n, r in enumerate(index):
                block = src[r["offset"]: r["offset"] + r["frames"]]
                feats[offset: offset + r["frames"]] = block
                b64 = block.astype(np.float64)
                s1 += b64.sum(axis=0)
                s2 += (b64 * b64).sum(axis=0)
                key = f"{tag}-{r['key']}"
                fi.write(json.dumps(dict(r, key=key, offset=offset)) + "\n")
                fd.write(json.dumps(dict(meta.get(r["key"], {"txt": r["txt"]}), key=key, source=folder)) + "\n")
                ft.write(f"{key} {r['txt']}\n")
                offset += r["frames"]
                if n % 2000 == 0:
                    print(f"{folder}: {n}/{len(index)}", flush=True)
    feats.flush()
    num_utts = sum(len(index) for _, index, _ in chosen)
    with open(os.path.join(split_dir, "global_cmvn"), "w") as f:
        json.dump(dict(mean_stat=s1.tolist(), var_stat=s2.tolist(), frame_num=int(total)), f)

    for spec in a.link:
        name, _, target = spec.partition("=")
        link = os.path.join(a.out, name)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.abspath(target), link)
    hours = total / 360000.0
    print(f"{split_dir}: {num_utts} utterances, {hours:.2f} h from "
          + ", ".join(f"{folder} ({len(index)})" for folder, index, _ in chosen), flush=True)


if __name__ == "__main__":
    main()
