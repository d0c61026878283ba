#!/usr/bin/env python3
"""Offline CPU benchmark: u2serve vs PyTorch (eager / inference_mode / jit) vs ONNX Runtime, same
models, same clips, same thread count, in one run (docs/benchmarks.md).

    .venv/bin/python bench/run_cpu_bench.py            # everything: build, models, export, run

PyTorch runs as several variants (eager; inference_mode and jit with OMP_WAIT_POLICY=PASSIVE, see
bench/peer_torch.py); each column's speed-up is against the fastest of them.

int8 peers (in the same rounds, `--peers`): u2serve-int8 (`u2bench serve --precision int8`: the
linear layers' weights quantized at load, docs/model-format.md), onnxruntime-int8 (the same ONNX
files after onnxruntime.quantization.quantize_dynamic, bench/peer_ort.py) and pytorch-int8-<variant>
(torch.ao.quantization.quantize_dynamic over nn.Linear, bench/peer_torch.py; `--torch-int8-variants`,
the fastest is "PyTorch int8"). The report adds an int8 table: each int8 peer against its own
float32 run, against ONNX Runtime int8 and against PyTorch int8.

Steps: build u2bench (build-bench/, Release) -> make the random-weight checkpoints and convert
them (bench/make_models.py) -> export ONNX (bench/peer_ort.py --export) -> measure the machine's
sgemm rate (u2bench sgemm) -> per model, start every peer once as a server process (the model
loaded once), warm each up, then run `--rounds` rounds in which every peer gets each request
(clip x {encoder, full}) once, peers in rotating order, so that load changes on a shared machine
hit all peers alike -> medians -> table, bench/results/cpu_offline.{json,md,png}.

"encoder" = fbank features -> CTC log-probs (CMVN, subsampling, Conformer, CTC head).
"full"    = waveform -> fbank -> encoder -> CTC prefix beam search (beam 10) -> attention
            rescoring (the model's ctc_weight / reverse_weight) -> best hypothesis.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_common as bc  # noqa: E402

PY = sys.executable
BUILD_DIR = os.path.join(bc.ROOT, "build-bench")  # --build-dir
U2BENCH = os.path.join(BUILD_DIR, "bench", "u2bench")
PEERS = ["u2serve", "pytorch", "onnxruntime", "u2serve-int8", "pytorch-int8", "onnxruntime-int8"]
INT8_ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")  # /proc/cpuinfo flags


def sh(cmd, **kw):
    bc.log("$ " + " ".join(cmd))
    return subprocess.run(cmd, check=True, **kw)


class Peer:
    """A peer server process speaking the JSON-lines protocol (see bench/u2bench.cc)."""

    def __init__(self, name, cmd, env=None):
        self.name = name
        bc.log("[%s] starting: %s" % (name, " ".join(cmd)))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, cwd=bc.ROOT)

    def ask(self, **req):
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("%s exited (rc %s) on %r" % (self.name, self.proc.wait(), req))
        resp = json.loads(line)
        if "error" in resp:
            raise RuntimeError("%s: %s (request %r)" % (self.name, resp["error"], req))
        return resp

    def close(self):
        try:
            self.proc.stdin.write('{"cmd": "quit"}\n')
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)
        except Exception:
            self.proc.kill()
            self.proc.wait()


def cpu_isa():
    """Which of INT8_ISA the CPU has (the first "flags" line of /proc/cpuinfo): VNNI (avx512_vnni,
    avx_vnni) gives int8 dot products in one instruction, plain avx2 needs several."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.partition(":")[2].split())
                return [x for x in INT8_ISA if x in flags]
    return []


def machine_info():
    info = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache", "L3 cache",
                             "Hypervisor vendor"):
                info[k.strip()] = v.strip()
        flags = [l for l in lscpu.splitlines() if l.startswith("Flags")]
        if flags:
            info["avx512"] = "avx512f" in flags[0]
            info["avx2"] = "avx2" in flags[0]
        info["cpu_isa"] = cpu_isa()
        # OpenBLAS (u2serve's attention products, Debian's PyTorch) picks its kernels from the CPU
        # model; an OpenBLAS older than the CPU falls back to slow ones unless this is set.
        info["OPENBLAS_CORETYPE"] = os.environ.get("OPENBLAS_CORETYPE")
        with open("/proc/meminfo") as f:
            info["MemTotal"] = f.readline().split(":")[1].strip()
        blas = os.path.realpath("/etc/alternatives/libblas.so.3-x86_64-linux-gnu")
        info["libblas.so.3"] = blas
    except Exception as e:  # informational only
        info["error"] = str(e)
    return info


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def sgemm_shapes(name, seconds):
    """The encoder's GEMM shapes for a clip: (M, N, K) of C = A W^T, and how many times each
    runs per utterance, to weight the model-shape sgemm rate."""
    cfg = bc.MODELS[name]
    ec = cfg["encoder_conf"]
    D, Fe, N, V = ec["output_size"], ec["linear_units"], ec["num_blocks"], cfg["output_dim"]
    T, Tp = bc.encoder_frames(seconds * bc.SAMPLE_RATE)
    F2 = (((cfg["input_dim"] - 1) // 2) - 1) // 2
    common = [((Tp, Fe, D), 2 * N), ((Tp, D, Fe), 2 * N), ((Tp, D, D), 5 * N),
              ((Tp * F2, D, 9 * D), 1), ((Tp, V, D), 1)]
    if cfg["encoder"] == "e_branchformer":  # cgMLP projections and merge_proj
        U = ec["cgmlp_linear_units"]
        return common + [((Tp, U, D), N), ((Tp, D, U // 2), N), ((Tp, D, 2 * D), N)]
    return common + [((Tp, 2 * D, D), N)]  # pointwise_conv1


def measure_sgemm(models, seconds, threads):
    shapes = [(1024, 1024, 1024), (2048, 2048, 2048)]
    for name in models:
        for (m, n, k), _ in sgemm_shapes(name, seconds):
            if (m, n, k) not in shapes:
                shapes.append((m, n, k))
    out = subprocess.run([U2BENCH, "sgemm", "--threads", str(threads), "--shapes",
                          ";".join("%d,%d,%d" % s for s in shapes)],
                         check=True, capture_output=True, text=True)
    sys.stderr.write(out.stderr)
    res = json.loads(out.stdout)
    rate = {(r["m"], r["n"], r["k"]): r["gflops"] for r in res["shapes"]}
    res["peak_gflops"] = max(rate[(1024, 1024, 1024)], rate[(2048, 2048, 2048)])
    res["model_shape_gflops"] = {}
    for name in models:  # time-weighted: total FLOPs / total time over the encoder's GEMMs
        fl = ti = 0.0
        for (m, n, k), count in sgemm_shapes(name, seconds):
            f = 2.0 * m * n * k * count
            fl += f
            ti += f / (rate[(m, n, k)] * 1e9)
        res["model_shape_gflops"][name] = fl / ti / 1e9
    return res


def u2bench_has_precision(path):
    """Whether `u2bench serve` takes --precision (the CPU int8 path)."""
    out = subprocess.run([path, "serve", "--help"], capture_output=True, text=True)
    return "--precision" in out.stdout + out.stderr


def start_peers(name, args):
    peers = {}
    clips = []
    for s in args.seconds:
        clips += ["--clip", "%d=%s" % (s, os.path.join(bc.WORK_DIR, "clips", "clip_%ds.wav" % s))]
    for p, extra in (("u2serve", []), ("u2serve-int8", ["--precision", "int8"])):
        if p in args.peers:
            peers[p] = Peer(p, [U2BENCH, "serve", "--model-dir",
                                os.path.join(bc.model_dir(name), "u2serve"),
                                "--threads", str(args.threads)] + clips + extra)
    if args.baseline_u2bench:  # an earlier u2serve build, measured in the same rounds
        peers["u2serve-before"] = Peer("u2serve-before", [
            os.path.abspath(args.baseline_u2bench), "serve", "--model-dir",
            os.path.join(bc.model_dir(name), "u2serve"), "--threads", str(args.threads)] + clips)
    secs = [str(s) for s in args.seconds]
    for group, precision, variants in (("pytorch", "fp32", args.torch_variants),
                                       ("pytorch-int8", "int8", args.torch_int8_variants)):
        if group in args.peers:
            for v in variants:
                peers[group + "-" + v] = Peer(group + "-" + v, [
                    PY, os.path.join(bc.BENCH_DIR, "peer_torch.py"), "--model", name, "--variant", v,
                    "--precision", precision, "--threads", str(args.threads), "--seconds"] + secs)
    for p, precision in (("onnxruntime", "fp32"), ("onnxruntime-int8", "int8")):
        if p in args.peers:
            peers[p] = Peer(p, [
                PY, os.path.join(bc.BENCH_DIR, "peer_ort.py"), "--model", name,
                "--precision", precision, "--threads", str(args.threads), "--seconds"] + secs)
    return peers


def bench_model(name, args):
    peers = start_peers(name, args)
    try:
        infos = {p: peer.ask(cmd="info") for p, peer in peers.items()}
        for p, i in infos.items():
            bc.log("[%s %s] %s" % (name, p, json.dumps(i)))
        for w in range(args.warmup):
            for p, peer in peers.items():
                for s in args.seconds:
                    for mode in ("encoder", "full"):
                        t = peer.ask(cmd=mode, clip=str(s))["time_s"]
                        bc.log("[%s warm-up %d/%d] %-22s %2ds %-7s %.3f s"
                               % (name, w + 1, args.warmup, p, s, mode, t))
        runs = {(p, s, m): [] for p in peers for s in args.seconds for m in ("encoder", "full")}
        order = list(peers)
        for r in range(args.rounds):
            t_round = time.perf_counter()
            for s in args.seconds:
                for mode in ("encoder", "full"):
                    for p in order:
                        # An idle gap first: the previous peer's pool threads (OpenMP's and ONNX
                        # Runtime's spin-waits) must not eat into this peer's request.
                        time.sleep(args.gap_ms / 1000.0)
                        runs[(p, s, mode)].append(peers[p].ask(cmd=mode, clip=str(s)))
            order = order[1:] + order[:1]
            bc.log("[%s round %d/%d] %.1f s, load average %s | %s"
                   % (name, r + 1, args.rounds, time.perf_counter() - t_round, loadavg(),
                      "  ".join("%s %ds enc %.3f" % (p, s, runs[(p, s, "encoder")][-1]["time_s"])
                                for p in peers for s in args.seconds)))
    finally:
        for peer in peers.values():
            peer.close()

    clips = []
    for s in args.seconds:
        num_samples = s * bc.SAMPLE_RATE
        rec = {"seconds": s, "num_samples": num_samples,
               "encoder_frames": bc.encoder_frames(num_samples)[1],
               "encoder_gflop": bc.gflop(bc.encoder_macs(name, num_samples)),
               "encoder_macs_by_class": bc.encoder_macs(name, num_samples), "peers": {}}
        for p in peers:
            enc = runs[(p, s, "encoder")]
            full = runs[(p, s, "full")]
            last = full[-1]
            rec["peers"][p] = {
                "encoder_s": statistics.median(r["time_s"] for r in enc),
                "encoder_min_s": min(r["time_s"] for r in enc),
                "encoder_runs_s": [r["time_s"] for r in enc],
                "full_s": statistics.median(r["time_s"] for r in full),
                "full_min_s": min(r["time_s"] for r in full),
                "full_runs_s": [r["time_s"] for r in full],
                "stages_s": {k: statistics.median(r["stages_s"][k] for r in full)
                             for k in last["stages_s"]},
                "best": last["best"], "nbest_lengths": last["nbest_lengths"],
            }
        rec["hypothesis_reference"] = "u2serve" if "u2serve" in rec["peers"] else next(iter(rec["peers"]))
        ref = rec["peers"][rec["hypothesis_reference"]]
        rec["nbest_lengths"] = ref["nbest_lengths"]
        rec["decoder_gflop"] = bc.gflop(bc.decoder_macs(name, rec["encoder_frames"],
                                                        ref["nbest_lengths"]))
        rec["same_best_hypothesis"] = {p: v["best"] == ref["best"] for p, v in rec["peers"].items()}
        clips.append(rec)
    return {"model": name, "config": bc.MODELS[name], "peer_info": infos, "clips": clips}


def is_int8(peer):
    return peer.endswith("-int8") or peer.startswith("pytorch-int8-")


def fp32_counterpart(peer, ps, best_torch):
    """The float32 run of an int8 peer's engine: u2serve, onnxruntime, the same PyTorch variant
    (else the fastest one)."""
    if peer.startswith("pytorch-int8-"):
        same = "pytorch-" + peer[len("pytorch-int8-"):]
        return same if same in ps else best_torch
    return peer[:-len("-int8")]


def summarize(results, sgemm, stat="median"):
    """Rows of the table: per model, clip and peer. stat "median" uses the medians over the
    rounds, "min" the fastest round (the least disturbed one on a shared machine)."""
    rate = sgemm["peak_gflops"]
    ek, fk = ("encoder_s", "full_s") if stat == "median" else ("encoder_min_s", "full_min_s")
    rows = []
    for m in results["models"]:
        for c in m["clips"]:
            ps = c["peers"]
            torch_variants = [p for p in ps if p.startswith("pytorch-") and not is_int8(p)]
            best_torch_enc = min(torch_variants, key=lambda p: ps[p][ek]) if torch_variants else None
            best_torch_full = min(torch_variants, key=lambda p: ps[p][fk]) if torch_variants else None
            torch_int8 = [p for p in ps if p.startswith("pytorch-int8-")]
            best_int8_enc = min(torch_int8, key=lambda p: ps[p][ek]) if torch_int8 else None
            best_int8_full = min(torch_int8, key=lambda p: ps[p][fk]) if torch_int8 else None
            ideal_enc = c["encoder_gflop"] / rate
            ideal_full = (c["encoder_gflop"] + c["decoder_gflop"]) / rate
            for p in ps:
                enc, full = ps[p][ek], ps[p][fk]
                row = {"model": m["model"], "seconds": c["seconds"], "peer": p, "stat": stat,
                       "encoder_s": enc, "encoder_rtf": enc / c["seconds"],
                       "encoder_xrt": c["seconds"] / enc,
                       "full_s": full, "full_rtf": full / c["seconds"], "full_xrt": c["seconds"] / full,
                       "stages_s": ps[p]["stages_s"],
                       "encoder_vs_flop_bound": enc / ideal_enc,
                       "full_vs_flop_bound": full / ideal_full,
                       "ideal_encoder_s": ideal_enc, "ideal_full_s": ideal_full,
                       "same_best_hypothesis": c["same_best_hypothesis"][p]}
                if best_torch_enc:
                    row["speedup_vs_pytorch_encoder"] = ps[best_torch_enc][ek] / enc
                    row["speedup_vs_pytorch_full"] = ps[best_torch_full][fk] / full
                    row["pytorch_best_encoder_variant"] = best_torch_enc
                    row["pytorch_best_full_variant"] = best_torch_full
                if "onnxruntime" in ps:
                    row["speedup_vs_onnxruntime_encoder"] = ps["onnxruntime"][ek] / enc
                    row["speedup_vs_onnxruntime_full"] = ps["onnxruntime"][fk] / full
                # int8: against the same engine in float32, ONNX Runtime int8, PyTorch int8.
                if is_int8(p):
                    for part, key, best in (("encoder", ek, best_torch_enc), ("full", fk, best_torch_full)):
                        ref = fp32_counterpart(p, ps, best)
                        if ref in ps:
                            row["fp32_peer_" + part] = ref
                            row["speedup_vs_fp32_" + part] = ps[ref][key] / ps[p][key]
                if "onnxruntime-int8" in ps:
                    row["speedup_vs_onnxruntime_int8_encoder"] = ps["onnxruntime-int8"][ek] / enc
                    row["speedup_vs_onnxruntime_int8_full"] = ps["onnxruntime-int8"][fk] / full
                if best_int8_enc:
                    row["speedup_vs_pytorch_int8_encoder"] = ps[best_int8_enc][ek] / enc
                    row["speedup_vs_pytorch_int8_full"] = ps[best_int8_full][fk] / full
                    row["pytorch_int8_best_encoder_variant"] = best_int8_enc
                    row["pytorch_int8_best_full_variant"] = best_int8_full
                rows.append(row)
    return rows


def x(r, k):
    """A row's ratio `k` as "1.23x", or "-" when the run has none."""
    return "%.2fx" % r[k] if k in r else "-"


def table(rows):
    lines = ["| model | clip | peer | encoder RTF | encoder x real time | full RTF | full x real "
             "time | encoder speed-up vs PyTorch | full speed-up vs PyTorch | encoder vs ORT "
             "| full vs ORT | encoder / FLOP bound | full / FLOP bound | same hyp |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    for r in rows:
        lines.append("| %s | %d s | %s | %.4f | %.1f | %.4f | %.1f | %s | %s | %s | %s | %.2f | %.2f | %s |" % (
            r["model"], r["seconds"], r["peer"], r["encoder_rtf"], r["encoder_xrt"], r["full_rtf"],
            r["full_xrt"], x(r, "speedup_vs_pytorch_encoder"), x(r, "speedup_vs_pytorch_full"),
            x(r, "speedup_vs_onnxruntime_encoder"), x(r, "speedup_vs_onnxruntime_full"),
            r["encoder_vs_flop_bound"], r["full_vs_flop_bound"],
            "yes" if r["same_best_hypothesis"] else "no"))
    return lines


def int8_table(rows):
    """The int8 peers: against their own engine in float32, ONNX Runtime int8, PyTorch int8."""
    lines = ["| model | clip | peer | encoder x real time | full x real time | encoder vs own fp32 "
             "| full vs own fp32 | encoder vs ORT int8 | full vs ORT int8 | encoder vs PyTorch int8 "
             "| full vs PyTorch int8 | same hyp |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    for r in rows:
        if not is_int8(r["peer"]):
            continue
        lines.append("| %s | %d s | %s | %.1f | %.1f | %s | %s | %s | %s | %s | %s | %s |" % (
            r["model"], r["seconds"], r["peer"], r["encoder_xrt"], r["full_xrt"],
            x(r, "speedup_vs_fp32_encoder"), x(r, "speedup_vs_fp32_full"),
            x(r, "speedup_vs_onnxruntime_int8_encoder"), x(r, "speedup_vs_onnxruntime_int8_full"),
            x(r, "speedup_vs_pytorch_int8_encoder"), x(r, "speedup_vs_pytorch_int8_full"),
            "yes" if r["same_best_hypothesis"] else "no"))
    return lines


def markdown(results, rows):
    sg = results["sgemm"]
    lines = ["Medians over the rounds:", ""] + table(rows)
    lines.append("")
    lines.append("Fastest round of each (the least disturbed run on a shared machine):")
    lines.append("")
    rows_min = summarize(results, sg, "min")
    lines += table(rows_min)
    lines.append("")
    lines.append("Speed-ups are against the fastest PyTorch variant for that column (and ONNX "
                 "Runtime), all float32. FLOP bound = analytic FLOPs / the measured 2-thread sgemm "
                 "rate (%.1f GFLOP/s); a ratio of 1.0 would be running every FLOP at sgemm speed "
                 "(for int8 peers too: it is the float32 bound)." % sg["peak_gflops"])
    lines.append("")
    if any(is_int8(r["peer"]) for r in rows):
        lines.append("int8 peers, medians over the rounds (own fp32 = the same engine in float32: "
                     "u2serve, onnxruntime, the same PyTorch variant; PyTorch int8 = its fastest "
                     "int8 variant; same hyp = the same best hypothesis as u2serve float32, or as the first "
                     "peer when u2serve did not run):")
        lines.append("")
        lines += int8_table(rows)
        lines.append("")
        lines.append("int8 peers, fastest round of each:")
        lines.append("")
        lines += int8_table(rows_min)
        lines.append("")
    lines.append("Stage medians of the full pipeline (seconds):")
    lines.append("")
    lines.append("| model | clip | peer | fbank | encoder | CTC prefix beam search | attention rescoring |")
    lines.append("|---|---|---|---|---|---|---|")
    for r in rows:
        st = r["stages_s"]
        lines.append("| %s | %d s | %s | %.4f | %.4f | %.4f | %.4f |" % (
            r["model"], r["seconds"], r["peer"], st["fbank"], st["encoder"], st["search"],
            st["rescoring"]))
    lines.append("")
    lines.append("FLOPs per clip (analytic, bench/bench_common.py):")
    lines.append("")
    lines.append("| model | clip | encoder frames | encoder GFLOP | n-best lengths | rescoring GFLOP |")
    lines.append("|---|---|---|---|---|---|")
    for m in results["models"]:
        for c in m["clips"]:
            lines.append("| %s | %d s | %d | %.2f | %s | %.2f |" % (
                m["model"], c["seconds"], c["encoder_frames"], c["encoder_gflop"],
                ",".join(str(x) for x in c["nbest_lengths"]), c["decoder_gflop"]))
    return "\n".join(lines) + "\n"


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted({(r["model"], r["seconds"]) for r in rows})
    peers = []
    for r in rows:
        if r["peer"] not in peers:
            peers.append(r["peer"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    width = 0.8 / max(1, len(peers))
    for ax, key, title in ((axes[0], "encoder_xrt", "encoder + CTC"),
                           (axes[1], "full_xrt", "full pipeline (fbank .. attention rescoring)")):
        for i, p in enumerate(peers):
            vals = []
            for g in groups:
                v = [r[key] for r in rows if (r["model"], r["seconds"]) == g and r["peer"] == p]
                vals.append(v[0] if v else 0)
            xs = [j + (i - (len(peers) - 1) / 2) * width for j in range(len(groups))]
            bars = ax.bar(xs, vals, width, label=p)
            for b, v in zip(bars, vals):
                ax.text(b.get_x() + b.get_width() / 2, v, "%.0f" % v, ha="center", va="bottom",
                        fontsize=7)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(["%s\n%d s" % g for g in groups], fontsize=8)
        ax.set_ylabel("x real time (higher is better)")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Offline CPU throughput, 2 threads, batch 1 (bench/run_cpu_bench.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(args):
    global BUILD_DIR, U2BENCH
    t_start = time.time()
    BUILD_DIR = os.path.abspath(args.build_dir)
    U2BENCH = os.path.join(BUILD_DIR, "bench", "u2bench")

    if not args.skip_build:
        sh(["cmake", "-S", bc.ROOT, "-B", BUILD_DIR, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release"],
           stdout=subprocess.DEVNULL)
        sh(["cmake", "--build", BUILD_DIR, "-j2", "--target", "u2bench"])
    if "u2serve-int8" in args.peers and not u2bench_has_precision(U2BENCH):
        raise SystemExit("%s: `serve` has no --precision option (build the CPU int8 change), or "
                         "leave u2serve-int8 out of --peers" % U2BENCH)
    sh([PY, os.path.join(bc.BENCH_DIR, "make_models.py"), "--models"] + args.models)
    for name in args.models:
        odir = os.path.join(bc.model_dir(name), "onnx")
        if "onnxruntime" in args.peers or "onnxruntime-int8" in args.peers:
            if not os.path.exists(os.path.join(odir, "decoder.onnx")):
                sh([PY, os.path.join(bc.BENCH_DIR, "peer_ort.py"), "--model", name, "--export"])
        # The int8 files are cached beside the float ones and redone when older than them.
        if "onnxruntime-int8" in args.peers and any(
                not os.path.exists(os.path.join(odir, part + ".int8.onnx"))
                or os.path.getmtime(os.path.join(odir, part + ".int8.onnx"))
                < os.path.getmtime(os.path.join(odir, part + ".onnx"))
                for part in ("encoder", "decoder")):
            sh([PY, os.path.join(bc.BENCH_DIR, "peer_ort.py"), "--model", name, "--export",
                "--precision", "int8"])

    results = {"command": " ".join([os.path.relpath(sys.argv[0], bc.ROOT)] + sys.argv[1:]),
               "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t_start)),
               "threads": args.threads, "warmup": args.warmup, "rounds": args.rounds, "gap_ms": args.gap_ms,
               "machine": machine_info(), "loadavg_start": loadavg(), "models": []}
    bc.log("[sgemm] measuring the machine's sgemm rate (%d threads)" % args.threads)
    results["sgemm"] = measure_sgemm(args.models, max(args.seconds), args.threads)
    bc.log("[sgemm] peak %.1f GFLOP/s; at the encoders' shapes: %s" % (
        results["sgemm"]["peak_gflops"],
        ", ".join("%s %.1f" % kv for kv in results["sgemm"]["model_shape_gflops"].items())))
    for name in args.models:
        results["models"].append(bench_model(name, args))
    bc.log("[sgemm] measuring again after the peers")
    results["sgemm_after"] = measure_sgemm(args.models, max(args.seconds), args.threads)
    results["loadavg_end"] = loadavg()
    results["wall_s"] = time.time() - t_start
    os.makedirs(args.out, exist_ok=True)
    bc.dump_json(results, os.path.join(args.out, "cpu_offline.json"))
    report(results, args.out)


def report(results, out_dir):
    """Writes cpu_offline.md / .png (and the table into the JSON) from a run's results."""
    rows = summarize(results, results["sgemm"])
    results["table"] = rows
    results["table_min"] = summarize(results, results["sgemm"], "min")
    bc.dump_json(results, os.path.join(out_dir, "cpu_offline.json"))
    args = argparse.Namespace(out=out_dir, threads=results["threads"], warmup=results["warmup"],
                              rounds=results["rounds"])
    md = markdown(results, rows)
    with open(os.path.join(args.out, "cpu_offline.md"), "w") as f:
        f.write("# Offline CPU benchmark results\n\n")
        f.write("`%s`, %s UTC, %d threads, %d warm-up + %d timed rounds (medians), sgemm %.1f "
                "GFLOP/s before / %.1f after, load average %s at start, %s at end.\n\n" % (
                    results["command"], results["started_utc"], args.threads, args.warmup,
                    args.rounds, results["sgemm"]["peak_gflops"],
                    results["sgemm_after"]["peak_gflops"], results["loadavg_start"],
                    results["loadavg_end"]))
        mi = results["machine"]
        isa = mi.get("cpu_isa")
        f.write("CPU: %s, %s CPUs; int8-relevant ISA (/proc/cpuinfo): %s; OPENBLAS_CORETYPE %s.\n\n" % (
            mi.get("Model name", "?"), mi.get("CPU(s)", "?"),
            "not recorded" if isa is None else " ".join(isa) or "none of " + " ".join(INT8_ISA),
            mi.get("OPENBLAS_CORETYPE") or "unset (OpenBLAS's own choice)"))
        f.write(md)
    try:
        plot(rows, os.path.join(args.out, "cpu_offline.png"))
    except Exception as e:
        bc.log("[plot] failed: %s" % e)
    print(md)
    bc.log("[done] %.0f s; results in %s" % (results["wall_s"], args.out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(bc.DEFAULT_MODELS), choices=list(bc.MODELS))
    ap.add_argument("--seconds", type=int, nargs="+", default=list(bc.CLIP_SECONDS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--gap-ms", type=float, default=300.0,
                    help="idle time before each timed request, so no peer runs while another's "
                         "threads still spin (default 300)")
    ap.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS,
                    help="default: all; the *-int8 ones are the int8 peers (see above)")
    ap.add_argument("--torch-variants", nargs="+",
                    default=["eager", "inference_mode+passive", "jit+passive"],
                    help="bench/peer_torch.py --variant values; the fastest is PyTorch's number")
    ap.add_argument("--torch-int8-variants", nargs="+", default=["inference_mode+passive", "jit+passive"],
                    help="the same for pytorch-int8 (peer_torch.py --precision int8)")
    ap.add_argument("--skip-build", action="store_true", help="use the existing <build-dir>/bench/u2bench")
    ap.add_argument("--build-dir", default=BUILD_DIR, help="where u2bench is built (default build-bench/)")
    ap.add_argument("--baseline-u2bench", metavar="PATH",
                    help="also run this u2bench binary (an earlier build) as peer u2serve-before")
    ap.add_argument("--out", default=bc.RESULTS_DIR)
    ap.add_argument("--report-only", metavar="JSON",
                    help="only re-render the .md/.png (into --out) from an earlier run's JSON")
    args = ap.parse_args()
    if args.report_only:
        with open(args.report_only) as f:
            results = json.load(f)
        os.makedirs(args.out, exist_ok=True)
        report(results, args.out)
        return
    run(args)


if __name__ == "__main__":
    main()
