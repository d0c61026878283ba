#!/usr/bin/env python3
"""PyTorch peer of u2gpubench on the GPU: WeNet's model (tools/u2ref, a state-dict-compatible
re-implementation of WeNet's ASRModel) with random weights, config from bench/bench_common.MODELS,
under torch.autocast(float16) (or float32 with --dtype fp32), batch by batch.

Modes, matching u2gpubench's:
  encoder  padded batch (B, T, 80) -> encoder -> CTC log-softmax -> log-probs to the host
  full     torchaudio kaldi fbank per utterance on the GPU -> encoder + CTC as above -> attention
           decoder on 10 hypotheses x 5 tokens/s per utterance (WeNet rescores utterance by
           utterance, so this loops over the batch as WeNet does)
One JSON object per (batch, mode) on stdout (and appended to --json).

Usage: torch_peer.py --model aishell2_u2pp [--device cuda] [--dtype fp16] [--batches 1,4,16]
"""
import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--dtype", default="fp16", choices=["fp16", "fp32"])
    ap.add_argument("--batches", default="1,4,16,64,256")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--modes", default="encoder,full")
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--max-reps", type=int, default=20)
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    import torch
    import torchaudio

    sys.path.insert(0, os.path.join(ROOT, "bench"))
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import bench_common as bc
    from u2ref.model import U2Model

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_peer: torch %s has no CUDA device" % torch.__version__)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = U2Model(bc.MODELS[args.model]).to(dev).eval()
    label = "pytorch-%s-%s" % (torch.__version__, args.dtype)

    def autocast():
        if args.dtype == "fp16" and args.device == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    samples = int(args.seconds * 16000)
    vocab = model.vocab_size
    out = open(args.json, "a") if args.json else None
    for B in [int(b) for b in args.batches.split(",") if b]:
        g = torch.Generator().manual_seed(B)
        waves = [(0.05 * torch.randn(samples, generator=g)).to(dev) for _ in range(B)]
        hyp_len = max(1, round(5 * args.seconds))
        nbest = [[torch.randint(2, vocab - 2, (hyp_len,), generator=g).tolist() for _ in range(10)]
                 for _ in range(B)]

        def features():
            return [torchaudio.compliance.kaldi.fbank(w.unsqueeze(0) * 32768.0, num_mel_bins=80, frame_length=25,
                                                      frame_shift=10, dither=0.0, energy_floor=0.0,
                                                      sample_frequency=16000) for w in waves]

        with torch.inference_mode():
            feats0 = features()
        for mode in args.modes.split(","):
            times, stages = [], []

            def run():
                t0 = time.perf_counter()
                with torch.inference_mode(), autocast():
                    f = features() if mode == "full" else feats0
                    sync()
                    t1 = time.perf_counter()
                    x = torch.nn.utils.rnn.pad_sequence(f, batch_first=True)
                    lens = torch.tensor([t.size(0) for t in f], device=dev)
                    enc, enc_mask = model.encode(x, lens)
                    logp = model.ctc_logprobs(enc).float().cpu()
                    sync()
                    t2 = time.perf_counter()
                    if mode == "full":
                        enc_lens = enc_mask.squeeze(1).sum(1).tolist()
                        for b in range(B):
                            model.forward_attention_decoder(nbest[b], enc[b:b + 1, :enc_lens[b]])
                        sync()
                    t3 = time.perf_counter()
                del logp
                times.append(t3 - t0)
                stages.append((t1 - t0, t2 - t1, t3 - t2))

            r = {"model": args.model, "device": args.device, "backend": label, "gemm_math": args.dtype,
                 "mode": mode, "batch": B, "clip_seconds": args.seconds}
            try:
                run()  # warm-up
                times.clear()
                stages.clear()
                while (len(times) < 3 or sum(times) < args.min_time) and len(times) < args.max_reps:
                    run()
                med = statistics.median(times)
                r.update({"runs": len(times), "median_s": med, "audio_s_per_s": B * args.seconds / med,
                          "stages_median_s": {"fbank": statistics.median(s[0] for s in stages),
                                              "encode": statistics.median(s[1] for s in stages),
                                              "decoder": statistics.median(s[2] for s in stages)}})
                if args.device == "cuda":
                    r["gpu_mem_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
            except RuntimeError as e:  # e.g. out of memory at a large batch: report, go on
                r["error"] = str(e).splitlines()[0][:300]
                if args.device == "cuda":
                    torch.cuda.empty_cache()
            line = json.dumps(r)
            print(line, flush=True)
            if out:
                out.write(line + "\n")
                out.flush()


if __name__ == "__main__":
    main()
