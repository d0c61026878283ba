#!/usr/bin/env python3
"""Where u2serve's CPU time goes, per op class: `perf record` on `u2bench serve` answering a few
encoder (or full-pipeline) requests, then the samples grouped by symbol into classes.

    .venv/bin/python bench/profile_u2serve.py --model aishell2_u2pp --clip 10 --mode encoder

Classes: gemm (OpenBLAS sgemm kernels and packing), attention (score/softmax/context loops),
conv (depthwise conv, conv2d subsampling's im2col), elementwise (bias+activation, GLU, residual
add, LayerNorm, log-softmax, CMVN), threads (scheduler, sched_yield, futex: threads waiting),
memory (memcpy/memset, allocation, page faults), frontend (fbank/FFT), search (CTC prefix beam
search, rescoring arithmetic), load (model loading, excluded from the percentages), other.
Percentages are of CPU samples over all threads (2 threads busy = 2 CPU-seconds per second).
Writes bench/results/profile_<model>_<clip>s_<mode>.json and prints a table.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402

CLASSES = [
    ("load", r"Load|safetensors|SafeTensors|HalfToFloat|FromJson|ReadAudio|sndfile|soxr|Fbank::Create|"
             r"PackedWeight::PackedWeight|PackedInt8Weight::PackedInt8Weight|QuantizeRowsSymmetric|PrepareWeight"),
    ("gemm", r"sgemm|gemm_|blas|inner_thread|exec_threads|_ZEN|_HASWELL|_SKYLAKE|dgemm|GemmBias|Gemm\b|"
             r"PackedGemm|KernelAvx2|KernelPortable|GemmPrepared|GemmInt8|Int8GemmTile|DotAvx|DotPortable|"
             r"ForEachTileRow"),
    ("quantize", r"QuantizeActivationRows|QuantizeRow|RowAbsMax"),
    ("attention", r"Attention|(?<!Log)Softmax"),
    ("conv", r"Depthwise|Conv2d|Im2col|im2col"),
    ("elementwise", r"ActivateRow|BiasActivation|Glu|AddResidual|LayerNorm|LogSoftmax|Cmvn|Scale|AddBias|Silu|Relu|Embed|PositionalEncoding|Add\b"),
    ("frontend", r"Fbank|fftw|RealFft|fft"),
    ("search", r"CtcPrefixBeamSearch|Rescor|Prefix|Hypothes"),
    ("threads", r"sched|yield|futex|syscall|ThreadPool|schedule|switch|pthread_cond|wake|idle|hrtimer|tick|rcu|irq"),
    ("memory", r"mem(cpy|move|set)|malloc|free|page|folio|mmap|munmap|brk|alloc|lru|rmqueue|clear_page|mm_|pte|vma"),
]


def classify(sym):
    for name, pat in CLASSES:
        if re.search(pat, sym):
            return name
    return "other"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="aishell2_u2pp", choices=list(bc.MODELS))
    ap.add_argument("--clip", type=int, default=10)
    ap.add_argument("--mode", default="encoder", choices=["encoder", "full"])
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "int8"], help="u2bench serve --precision")
    ap.add_argument("--out", default=bc.RESULTS_DIR)
    ap.add_argument("--build-dir", default=os.path.join(bc.ROOT, "build-bench"),
                    help="where u2bench is built (default build-bench/)")
    args = ap.parse_args()
    u2bench = os.path.join(os.path.abspath(args.build_dir), "bench", "u2bench")

    wav = os.path.join(bc.WORK_DIR, "clips", "clip_%ds.wav" % args.clip)
    with tempfile.TemporaryDirectory() as tmp:
        req = os.path.join(tmp, "req.jsonl")
        with open(req, "w") as f:
            for _ in range(args.requests):
                f.write(json.dumps({"cmd": args.mode, "clip": str(args.clip)}) + "\n")
        data = os.path.join(tmp, "perf.data")
        with open(req) as stdin:
            run = subprocess.run(
                ["perf", "record", "-q", "-F", "997", "-o", data, "--", u2bench, "serve",
                 "--model-dir", os.path.join(bc.model_dir(args.model), "u2serve"),
                 "--threads", str(args.threads), "--precision", args.precision,
                 "--clip", "%d=%s" % (args.clip, wav)],
                stdin=stdin, capture_output=True, text=True, check=True)
        times = [json.loads(l)["time_s"] for l in run.stdout.splitlines() if l.startswith("{")]
        rep = subprocess.run(["perf", "report", "-i", data, "--sort", "symbol", "--stdio",
                              "--percent-limit", "0", "-F", "overhead,sample,sym"],
                             capture_output=True, text=True, check=True).stdout
    syms = []
    for line in rep.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\d+)\s+\[[.k]\]\s+(.*\S)", line)
        if m:
            syms.append((float(m.group(1)), int(m.group(2)), m.group(3)))
    syms.sort(key=lambda x: -x[1])
    total = sum(n for _, n, _ in syms)
    by_class = {}
    for _, n, s in syms:
        c = classify(s)
        by_class[c] = by_class.get(c, 0) + n
    run_samples = total - by_class.get("load", 0)
    pct = {c: 100.0 * n / run_samples for c, n in by_class.items() if c != "load"}
    top = [{"percent": 100.0 * n / run_samples, "class": classify(s), "symbol": s[:160]}
           for _, n, s in syms if classify(s) != "load"][:25]
    out = {"model": args.model, "clip_s": args.clip, "mode": args.mode, "threads": args.threads,
           "precision": args.precision,
           "request_times_s": times, "samples": run_samples, "percent_by_class": pct,
           "top_symbols": top, "loadavg": open("/proc/loadavg").read().split()[:3]}
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "profile_%s_%ds_%s%s.json" % (
        args.model, args.clip, args.mode, "_int8" if args.precision == "int8" else ""))
    bc.dump_json(out, path)
    print("u2serve %s %ds %s, %d threads; request times %s" % (
        args.model, args.clip, args.mode, args.threads, " ".join("%.3f" % t for t in times)))
    print("| class | % of CPU samples |\n|---|---|")
    for c, p in sorted(pct.items(), key=lambda kv: -kv[1]):
        print("| %s | %.1f |" % (c, p))
    print("\ntop symbols:")
    for t in top[:15]:
        print("  %5.1f%%  %-11s %s" % (t["percent"], t["class"], t["symbol"][:110]))
    print("-> " + path)


if __name__ == "__main__":
    main()
