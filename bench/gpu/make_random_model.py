#!/usr/bin/env python3
"""Writes a u2serve model directory with random weights from a manifest in bench/gpu/models/
(model.json + every tensor's name and shape, taken from the CPU benchmark's models), so that the
GPU machine can make the AISHELL-2- and WenetSpeech-sized models without the WeNet tool chain.

Weights: N(0, 1/fan_in) for matrices, N(0, 0.02) for biases, LayerNorm gain 1, BatchNorm running
stats (0, 1), CMVN (0, 1), the sinusoidal positional table. Speed does not depend on the values;
they only need to keep activations finite. Needs numpy and safetensors.

--ctc-blank-bias B adds B to the CTC output bias of the blank: random weights make CTC posteriors
flat (about 12 tokens/s leave the prefix search), a trained model's are peaky and mostly blank
(3-5 tokens/s); the streaming benchmark uses a bias so that the search and the rescoring see
realistic hypothesis lengths. Encoder/decoder cost does not depend on it.

Usage: make_random_model.py MANIFEST.json OUT_DIR [--seed 0] [--ctc-blank-bias 0]
"""
import argparse
import json
import math
import os
import sys


def sinusoid(length, dim, np):
    pos = np.arange(length, dtype=np.float32)[:, None]
    div = np.exp(np.arange(0, dim, 2, dtype=np.float32) * -(math.log(10000.0) / dim))
    pe = np.zeros((length, dim), dtype=np.float32)
    pe[:, 0::2] = np.sin(pos * div)
    pe[:, 1::2] = np.cos(pos * div)
    return pe


def make_tensor(name, shape, rng, np):
    last = name.rsplit(".", 1)[-1]
    if name.endswith("pos_enc.pe"):
        return sinusoid(shape[-2], shape[-1], np).reshape(shape)
    if name.endswith("global_cmvn.mean") or last in ("running_mean", "num_batches_tracked"):
        return np.zeros(shape, dtype=np.float32)
    if name.endswith("global_cmvn.istd") or last == "running_var":
        return np.ones(shape, dtype=np.float32)
    if len(shape) == 1 and last == "weight" and "norm" in name:
        return np.ones(shape, dtype=np.float32)
    if len(shape) == 1 or "pos_bias" in name:
        return (0.02 * rng.standard_normal(shape)).astype(np.float32)
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape, dtype=np.float32) / math.sqrt(max(fan_in, 1))).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("manifest")
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ctc-blank-bias", type=float, default=0.0)
    args = ap.parse_args()
    import numpy as np
    from safetensors.numpy import save_file

    with open(args.manifest) as f:
        man = json.load(f)
    os.makedirs(args.out_dir, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    tensors = {name: make_tensor(name, shape, rng, np) for name, shape in man["tensors"].items()}
    if args.ctc_blank_bias:
        tensors["ctc.ctc_lo.bias"][man["model_json"]["blank_id"]] += np.float32(args.ctc_blank_bias)
    for name, t in tensors.items():
        if not np.all(np.isfinite(t)):
            sys.exit("make_random_model: non-finite values in %s" % name)
    save_file(tensors, os.path.join(args.out_dir, "model.safetensors"),
              metadata={"format": "pt", "source": "bench/gpu/make_random_model.py"})
    mj = man["model_json"]
    with open(os.path.join(args.out_dir, "model.json"), "w") as f:
        json.dump(mj, f, indent=2)
    vocab = mj["vocab_size"]
    with open(os.path.join(args.out_dir, "units.txt"), "w") as f:
        for i in range(vocab):
            tok = "<blank>" if i == mj["blank_id"] else "<unk>" if i == mj["unk_id"] else (
                "<sos/eos>" if i == mj["sos_id"] else "t%d" % i)
            f.write("%s %d\n" % (tok, i))
    n = sum(int(np.prod(t.shape)) for t in tensors.values())
    print("make_random_model: %s: %d tensors, %.1fM parameters" % (args.out_dir, len(tensors), n / 1e6))


if __name__ == "__main__":
    main()
