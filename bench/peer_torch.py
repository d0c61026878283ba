#!/usr/bin/env python3
"""The PyTorch peer: WeNet's Python inference path (tools/u2ref, a state-dict-compatible
re-implementation of WeNet's ASRModel) on the benchmark clips, with a fixed thread count.

Pipeline (what WeNet's recognize.py does for mode attention_rescoring, batch 1):
    waveform -> torchaudio kaldi fbank -> encoder (CMVN, conv2d subsampling, Conformer, full
    context) -> CTC log-softmax -> CTC prefix beam search (beam 10, u2ref.search: WeNet's Python
    algorithm) -> attention rescoring (left decoder, + right decoder when reverse_weight > 0).

Variants (the benchmark reports the fastest as "PyTorch"): MODE[+passive]
    eager           torch.no_grad()
    inference_mode  torch.inference_mode()
    jit             encoder+CTC traced with torch.jit.trace per clip length, then torch.jit.freeze
                    (decoder eager), under inference_mode; warmed up 3 times per clip at start
                    (the profiling executor optimises the graph on its second run)
    +passive        OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning. On a
                    quiet machine spinning is usually faster; on a shared, oversubscribed one
                    spinning threads steal the cores that the working threads need.

--precision int8 (peer pytorch-int8-<variant>): the model after
torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8), WeNet's own int8
recipe: every nn.Linear (encoder, CTC head, decoders, also the subsampling's output linear) runs
with int8 weights per tensor and activations quantized per call; convolutions stay float32.
Encoder and rescoring both use the quantized model. Kernels: torch.backends.quantized.engine.

Serves the request protocol of bench/u2bench.cc (`serve`): one JSON request per stdin line
(info / encoder / full / quit), one JSON line back.
"""

import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", required=True, choices=list(bc.MODELS))
    ap.add_argument("--seconds", type=int, nargs="+", default=list(bc.CLIP_SECONDS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variant", default="eager",
                    help="eager | inference_mode | jit, optionally +passive")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "int8"],
                    help="int8: dynamic int8 quantization of every nn.Linear (see above)")
    args = ap.parse_args()
    mode, _, policy = args.variant.partition("+")
    if mode not in ("eager", "inference_mode", "jit") or policy not in ("", "passive"):
        ap.error("--variant: %r" % args.variant)

    bc.pin_threads(args.threads)
    if policy == "passive":
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # read by libgomp when torch loads
    import torch
    import yaml

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    sys.path.insert(0, os.path.join(bc.ROOT, "tools"))
    from make_models import clip_path, fbank, read_wav
    from u2ref.model import U2Model
    from u2ref.search import ctc_prefix_beam_search

    wdir = os.path.join(bc.model_dir(args.model), "wenet")
    with open(os.path.join(wdir, "train.yaml")) as f:
        cfg = yaml.safe_load(f)
    sd = torch.load(os.path.join(wdir, "final.pt"), map_location="cpu")
    model = U2Model.from_checkpoint(cfg, sd)
    if args.precision == "int8":
        model = torch.ao.quantization.quantize_dynamic(model.eval(), {torch.nn.Linear},
                                                       dtype=torch.qint8)
    name = "pytorch-" + ("int8-" if args.precision == "int8" else "") + args.variant
    ctc_weight, reverse_weight = bc.decoding_weights(args.model)
    ctx = torch.no_grad if mode == "eager" else torch.inference_mode

    class EncoderCtc(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, feats, lens):
            enc, _ = self.m.encode(feats, lens)
            return enc, self.m.ctc_logprobs(enc)

    eager_enc = EncoderCtc(model).eval()
    clips = {}
    for s in args.seconds:
        samples, _ = read_wav(clip_path(s))
        feats = fbank(samples).unsqueeze(0)
        lens = torch.tensor([feats.size(1)])
        enc_fn = eager_enc
        if mode == "jit":  # traced per clip length: shapes are baked into the graph
            with ctx():
                enc_fn = torch.jit.freeze(torch.jit.trace(eager_enc, (feats, lens)).eval())
                for _ in range(3):
                    enc_fn(feats, lens)
        clips[str(s)] = (samples, feats, lens, enc_fn)

    def info(_):
        return {"peer": name, "precision": args.precision,
                "quantized_engine": torch.backends.quantized.engine, "threads": torch.get_num_threads(),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
                "torch_version": torch.__version__, "blas_matmul_gflops": bc.torch_matmul_gflops(torch),
                "blas_info": re.findall(r"BLAS_INFO=\w+", torch.__config__.show()),
                "ctc_weight": ctc_weight, "reverse_weight": reverse_weight}

    def encoder(req):
        _, feats, lens, enc_fn = clips[req["clip"]]
        with ctx():
            t0 = time.perf_counter()
            enc_fn(feats, lens)
            return {"time_s": time.perf_counter() - t0}

    def full(req):
        samples, _, _, enc_fn = clips[req["clip"]]
        with ctx():
            t0 = time.perf_counter()
            feats = fbank(samples).unsqueeze(0)
            lens = torch.tensor([feats.size(1)])
            t1 = time.perf_counter()
            enc, logp = enc_fn(feats, lens)
            t2 = time.perf_counter()
            nbest = ctc_prefix_beam_search(logp, torch.tensor([logp.size(1)]), bc.BEAM)[0]
            t3 = time.perf_counter()
            idx, _, _ = model.rescore(nbest, enc, ctc_weight, reverse_weight)
            t4 = time.perf_counter()
        return {"time_s": t4 - t0,
                "stages_s": {"fbank": t1 - t0, "encoder": t2 - t1, "search": t3 - t2,
                             "rescoring": t4 - t3},
                "best": list(nbest[idx][0]), "nbest_lengths": [len(h) for h, _ in nbest],
                "encoder_frames": int(logp.size(1))}

    bc.log("[%s %s] ready: torch %s, %d threads" % (name, args.model, torch.__version__,
                                                     torch.get_num_threads()))
    bc.serve({"info": info, "encoder": encoder, "full": full})


if __name__ == "__main__":
    main()
