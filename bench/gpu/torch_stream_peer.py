#!/usr/bin/env python3
"""PyTorch peer of u2gpustream: WeNet's streaming step (forward_chunk with attention and conv caches,
tools/u2ref) for N concurrent streams, batched, under torch.autocast(float16) on the GPU (float32
with --dtype fp32 or on the CPU).

tools/u2ref's BaseEncoder.forward_chunk is batch 1 (as WeNet's); its layers take any batch, so this
script runs the same layer code on a batch of streams (forward_chunk_batched below: WeNet's
forward_chunk with caches of shape (B, H, t1, 2·dk) and (B, D, K-1) per layer). `--check` first
verifies it against u2ref's batch-1 forward_chunk on a few streams (float32, CPU or GPU).

What one step is: a batch of up to --max-batch streams' chunk windows ((C-1)·4 + 7 fbank frames,
C = 16) -> encoder chunk with the caches -> CTC log-softmax -> the top --beam tokens per frame
(what a prefix beam search with first-beam pruning reads) copied to the host. Not included (and
included in u2gpustream): the fbank (features are precomputed), the CTC prefix search and the
partial result on the host. Streams stay in fixed batches whose caches are kept stacked (no gather
or scatter per step: the cheapest layout), all at the same offset.

Arrival is aligned (every stream's chunk is ready at the tick's start, as u2gpustream
--arrival aligned): each tick the batches run one after another; a stream's chunk latency is the
time from the tick's start until its batch's top-k is on the host. A point is real-time when
every tick's work fits in the tick (640 ms) and the p99 latency is <= --budget-ms.

Weights: those of a u2serve model directory (--model-dir, the random model of
make_random_model.py: the same model u2gpustream runs) when given, else a random init of the
bench_common config.

One JSON object per point on stdout (and appended to --json), "kind": "stream".

Usage: torch_stream_peer.py --model aishell2_u2pp [--model-dir DIR] [--device cuda] [--dtype fp16]
                            [--streams 100,1000,4000,8000] [--search] [--max-batch 512] [--check]
"""
import argparse
import contextlib
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def forward_chunk_batched(enc, xs, offset, required_cache_size, att_caches, cnn_caches):
    """WeNet's BaseEncoder.forward_chunk for a batch of streams at the same offset.

    xs (B, W, I) raw fbank windows; att_caches[i] (B, H, t1, 2·dk) or None; cnn_caches[i]
    (B, D, K-1) or None, per layer. Returns (chunk_out (B, C', D), new att caches, new cnn caches).
    """
    import torch

    b = xs.size(0)
    masks = torch.ones(b, 1, xs.size(1), dtype=torch.bool, device=xs.device)
    if enc.global_cmvn is not None:
        xs = enc.global_cmvn(xs)
    xs, _, _ = enc.embed(xs, masks, offset)
    cache_t1 = 0 if att_caches[0] is None else att_caches[0].size(2)
    key_size = cache_t1 + xs.size(1)
    pos_emb = enc.embed.position_encoding(offset - cache_t1, key_size)  # (1, key_size, D): shared
    if required_cache_size < 0:
        next_cache_start = 0
    elif required_cache_size == 0:
        next_cache_start = key_size
    else:
        next_cache_start = max(key_size - required_cache_size, 0)
    empty_mask = torch.ones((0, 0, 0), dtype=torch.bool)
    new_att, new_cnn = [], []
    for i, layer in enumerate(enc.encoders):
        kv = None
        if att_caches[i] is not None:
            half = att_caches[i].size(-1) // 2
            kv = (att_caches[i][..., :half], att_caches[i][..., half:])
        xs, _, nkv, ncnn = layer(xs, empty_mask, pos_emb, None, kv, cnn_caches[i])
        new_att.append(torch.cat(nkv, dim=-1)[:, :, next_cache_start:, :])
        new_cnn.append(ncnn if ncnn.numel() > 0 else None)
    if enc.normalize_before and enc.final_norm:
        xs = enc.after_norm(xs)
    return xs, new_att, new_cnn


def load_model(args, torch, bc):
    from u2ref.model import U2Model

    cfg = bc.MODELS[args.model]
    if args.model_dir:
        try:
            from safetensors.torch import load_file
        except ImportError:
            print("torch_stream_peer: no safetensors module: random init instead of %s" % args.model_dir,
                  file=sys.stderr)
        else:
            sd = load_file(os.path.join(args.model_dir, "model.safetensors"))
            return U2Model.from_checkpoint(cfg, sd), "weights of %s" % args.model_dir
    torch.manual_seed(0)
    return U2Model(cfg).eval(), "random init"


def check_batched(model, feats, chunk, left, dev, torch):
    """forward_chunk_batched == u2ref's batch-1 forward_chunk, stream by stream (float32)."""
    enc = model.encoder
    sub, ctx = enc.embed.subsampling_rate, enc.embed.right_context + 1
    window, stride = (chunk - 1) * sub + ctx, chunk * sub
    required = chunk * left
    streams = 3
    starts = [7 * s for s in range(streams)]
    att1 = [torch.zeros(0, 0, 0, 0, device=dev) for _ in range(streams)]
    cnn1 = [torch.zeros(0, 0, 0, 0, device=dev) for _ in range(streams)]
    att_b = [None] * len(enc.encoders)
    cnn_b = [None] * len(enc.encoders)
    offset, worst = 0, 0.0
    for step in range(left + 3):
        xs = torch.stack([feats[s0 + step * stride: s0 + step * stride + window] for s0 in starts])
        yb, att_b, cnn_b = forward_chunk_batched(enc, xs, offset, required, att_b, cnn_b)
        for s in range(streams):
            y1, att1[s], cnn1[s] = enc.forward_chunk(xs[s:s + 1], offset, required, att1[s], cnn1[s])
            worst = max(worst, (y1[0] - yb[s]).abs().max().item() / (y1.abs().max().item() + 1e-9))
        offset += yb.size(1)
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", required=True, help="bench_common.MODELS name (the config)")
    ap.add_argument("--model-dir", default="", help="load these weights (u2serve model dir)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--dtype", default="fp16", choices=["fp16", "fp32"])
    ap.add_argument("--streams", default="100,1000,4000,8000")
    ap.add_argument("--search", action="store_true", help="bisect for the largest real-time N")
    ap.add_argument("--max-batch", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--left", type=int, default=4)
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--ticks", type=int, default=6)
    ap.add_argument("--warmup-ticks", type=int, default=5)
    ap.add_argument("--budget-ms", type=float, default=200.0)
    ap.add_argument("--time-limit", type=float, default=0.0, help="start no new point after this (s)")
    ap.add_argument("--check", action="store_true", help="verify the batched step against u2ref first")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    t_start = time.perf_counter()

    import numpy as np
    import torch

    sys.path.insert(0, os.path.join(ROOT, "bench"))
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import bench_common as bc

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_stream_peer: torch %s has no CUDA device" % torch.__version__)
    dev = torch.device(args.device)
    model, weights = load_model(args, torch, bc)
    model = model.to(dev).eval()
    enc = model.encoder
    label = "pytorch-%s-%s" % (torch.__version__, args.dtype)
    print("torch_stream_peer: %s (%s) on %s, %s, chunk %d, left %d, max batch %d" % (
        args.model, weights, args.device, label, args.chunk, args.left, args.max_batch), file=sys.stderr)

    sub, ctx = enc.embed.subsampling_rate, enc.embed.right_context + 1
    window, stride = (args.chunk - 1) * sub + ctx, args.chunk * sub
    tick_ms = args.chunk * sub * 10.0
    required = args.chunk * args.left

    # Features of 40 s of speech-like audio; stream s reads from its own offset into them. (Speed
    # does not depend on the values: without torchaudio's Kaldi fbank, log-mel-like noise.)
    audio = torch.from_numpy(bc.synth_speech_like(40.0, seed=3))
    try:
        import torchaudio

        feats = torchaudio.compliance.kaldi.fbank(audio.unsqueeze(0) * 32768.0, num_mel_bins=80, frame_length=25,
                                                  frame_shift=10, dither=0.0, energy_floor=0.0,
                                                  sample_frequency=16000)
    except Exception as e:  # noqa: BLE001 - any failure of the optional fbank: use stand-in features
        print("torch_stream_peer: no torchaudio Kaldi fbank (%s): random log-mel-like features" % e, file=sys.stderr)
        feats = 10.0 + 3.0 * torch.randn(3998, 80, generator=torch.Generator().manual_seed(3))
    feats = feats.to(dev)
    total_frames = feats.size(0)

    if args.check:
        # Pure float32 for the comparison (cuDNN convolutions default to TF32 on the GPU).
        tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        with torch.inference_mode():
            worst = check_batched(model, feats, args.chunk, args.left, dev, torch)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        print("torch_stream_peer: check: batched forward_chunk vs u2ref forward_chunk, max rel diff %.2e" % worst,
              file=sys.stderr)
        if not worst < 1e-4:
            sys.exit("torch_stream_peer: the batched step does not match u2ref's forward_chunk (%.2e)" % worst)

    def autocast():
        if args.dtype == "fp16" and args.device == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    out = open(args.json, "a") if args.json else None

    def run_point(n):
        r = {"kind": "stream", "model": args.model, "device": args.device, "backend": label,
             "gemm_math": args.dtype, "streams": n, "arrival": "aligned", "chunk": args.chunk,
             "left_chunks": args.left, "tick_ms": tick_ms, "max_batch": args.max_batch, "workers": 1,
             "beam": args.beam, "utterance_s": 0.0, "rescoring": False, "budget_ms": args.budget_ms,
             "includes": "encoder chunk + CTC log-softmax + top-k to host (no fbank, no search)"}
        groups = [list(range(g, min(n, g + args.max_batch))) for g in range(0, n, args.max_batch)]
        # Every stream's window start for tick 0 (then + stride per tick), spread over the audio.
        starts = torch.tensor([(s * 1237) % max(1, total_frames - window - stride * (args.warmup_ticks + args.ticks + 1))
                               for s in range(n)], device=dev)
        idx = torch.arange(window, device=dev)
        caches = [([None] * len(enc.encoders), [None] * len(enc.encoders)) for _ in groups]
        if args.device == "cuda":
            torch.cuda.synchronize()
            mem0 = torch.cuda.memory_allocated()
        latencies, tick_work = [], []
        offset = 0
        try:
            with torch.inference_mode(), autocast():
                for tick in range(args.warmup_ticks + args.ticks):
                    t0 = time.perf_counter()
                    done = []
                    for g, members in enumerate(groups):
                        rows = starts[members[0]:members[-1] + 1, None] + tick * stride + idx  # (B, W)
                        xs = feats[rows]  # (B, W, 80)
                        y, att, cnn = forward_chunk_batched(enc, xs, offset, required, caches[g][0], caches[g][1])
                        caches[g] = (att, cnn)
                        logp = model.ctc_logprobs(y)
                        top_v, top_i = logp.topk(args.beam, dim=-1)
                        top_v.float().cpu(), top_i.cpu()  # the host search's input (synchronises)
                        done.append((time.perf_counter() - t0) * 1000.0)
                        if g == 0:
                            chunk_frames = y.size(1)
                    offset += chunk_frames
                    if tick == args.warmup_ticks - 1 or (args.warmup_ticks == 0 and tick == 0):
                        if args.device == "cuda":
                            torch.cuda.synchronize()
                            mem1 = torch.cuda.memory_allocated()
                    if tick >= args.warmup_ticks:
                        tick_work.append(done[-1])
                        for g, members in enumerate(groups):
                            latencies += [done[g]] * len(members)
                        if done[-1] > 10 * tick_ms:  # hopeless: stop early
                            break
        except RuntimeError as e:  # e.g. out of memory: report, go on
            r["error"] = str(e).splitlines()[0][:300]
            if args.device == "cuda":
                torch.cuda.empty_cache()
            return r, False
        lat = np.array(latencies)
        p99 = float(np.percentile(lat, 99))
        within = max(tick_work) <= tick_ms
        r.update({"ticks": len(tick_work), "chunks": len(latencies),
                  "latency_ms": {"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90)),
                                 "p99": p99, "max": float(lat.max())},
                  "tick_work_ms": {"p50": float(np.median(tick_work)), "max": float(max(tick_work))},
                  "tick_within_budget": bool(within), "mean_batch": n / len(groups), "batches": len(groups) * len(tick_work),
                  "kept_up": bool(within), "realtime": bool(within and p99 <= args.budget_ms)})
        if args.device == "cuda":
            r["device_bytes_per_stream"] = (mem1 - mem0) / n
            r["gpu_mem_peak_gb"] = torch.cuda.max_memory_allocated() / 1e9
        del caches
        if args.device == "cuda":
            torch.cuda.empty_cache()
        return r, r["realtime"]

    outcomes = []

    def point(n, phase):
        r, ok = run_point(n)
        r["phase"] = phase
        line = json.dumps(r)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()
        if "error" not in r:
            print("torch_stream_peer: %6d streams  p50 %7.1f ms  p99 %7.1f ms  tick %7.1f ms  %s" % (
                n, r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["tick_work_ms"]["max"],
                "real-time" if ok else "not real-time"), file=sys.stderr)
        outcomes.append((n, ok))

    def out_of_time():
        return args.time_limit > 0 and time.perf_counter() - t_start > args.time_limit

    for n in [int(x) for x in args.streams.split(",") if x]:
        if out_of_time():
            print("torch_stream_peer: time limit: %d streams and later not run" % n, file=sys.stderr)
            break
        point(n, "sweep")

    def best_ok():
        return max([n for n, ok in outcomes if ok], default=0)

    def first_bad_above(lo):
        return min([n for n, ok in outcomes if not ok and n > lo], default=0)

    if args.search and best_ok() > 0 and first_bad_above(best_ok()) > 0:
        lo, hi = best_ok(), first_bad_above(best_ok())
        while hi - lo > max(50, lo // 20) and not out_of_time():
            mid = (lo + hi) // 2
            point(mid, "search")
            lo, hi = (mid, hi) if outcomes[-1][1] else (lo, mid)
    summary = {"kind": "stream_summary", "model": args.model, "device": args.device, "backend": label,
               "gemm_math": args.dtype, "arrival": "aligned", "utterance_s": 0.0, "budget_ms": args.budget_ms,
               "max_realtime_streams": best_ok(), "first_failing_streams": first_bad_above(best_ok()),
               "max_batch": args.max_batch, "workers": 1}
    line = json.dumps(summary)
    print(line, flush=True)
    if out:
        out.write(line + "\n")


if __name__ == "__main__":
    main()
