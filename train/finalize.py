#!/usr/bin/env python3
"""Turns a training run into the shipped demo model.

Steps (each can be skipped, see flags):
 1. average: mean of the last --avg model_step*.pt snapshots in --exp (WeNet's average_model:
    element-wise mean of the state_dicts), and with --avg-with also the last --avg of each earlier
    run named; then greedy dev CER of that average and of the newest snapshot alone; the better
    one becomes final.pt (--no-select keeps the average).
 2. export: train/work/export/{final.pt, train.yaml, global_cmvn, units.txt} in WeNet's layout.
 3. convert: tools/convert.py -> models/demo (float16 weights, --dtype float16).
 4. run history: models/demo/training/runs.json says how the weights were made ("weights"),
    lists every run of the --init chain that made them ("runs") and keeps the last run's arguments
    and data ("last_run"), from which train/accuracy_report.py writes its "Training" section.
    No training checkpoint ships (it would double the model in git with each new version):
    `train.py --init models/demo` continues from the converted weights themselves, with
    a fresh optimizer, which is also exactly what ships (an average or blend, not the last step).
 5. samples: --samples (0 = keep the current ones) test utterances copied to tests/data/samples/ with `text` and `wav.scp`
    (wav.scp paths are relative to that directory).
 6. accuracy: eval_ref.py on test and test_heldout_voice -> train/work/export/eval*.json;
    docs/accuracy.md is written from those numbers.

Usage: .venv/bin/python train/finalize.py [--avg 3] [--avg-with train/work/expM] [--skip-eval] [--eval-limit 0]
"""
import argparse
import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from u2ref.model import U2Model  # noqa: E402

PY = sys.executable


def pick_snapshots(exp, avg, avg_with=()):
    """The snapshots to average: the last `avg` model_step*.pt of each run in avg_with (oldest
    first), then of exp. Averaging across runs makes sense only along an --init chain: each run
    starts from the one before, so their weights lie in one basin (as snapshots of one run do)."""
    chosen = []
    for run_dir in [*avg_with, exp]:
        snaps = sorted(glob.glob(os.path.join(run_dir, "model_step*.pt")))
        if not snaps:
            raise SystemExit(f"no model_step*.pt snapshots in {run_dir}")
        chosen += snaps[-avg:]
    return chosen


def snapshot_name(path):
    """run/model_stepN.pt: the run's folder name tells snapshots of chained runs apart."""
    return os.path.join(os.path.basename(os.path.dirname(os.path.abspath(path))), os.path.basename(path))


def average(paths):
    avg = None
    for p in paths:
        sd = common.load_checkpoint(p)
        if avg is None:
            avg = {k: v.clone().double() if v.is_floating_point() else v.clone() for k, v in sd.items()}
        else:
            for k, v in sd.items():
                if v.is_floating_point():
                    avg[k] += v.double()
                else:
                    avg[k] = v.clone()
    return {k: (v / len(paths)).float() if v.is_floating_point() else v for k, v in avg.items()}


def interpolate(base_sd, tuned_sd, weight):
    """(1 - weight) * base + weight * tuned, per float tensor (WiSE-FT, Wortsman et al. 2022).
    A fine-tuned model and the weights it started from lie in one basin, so the straight line
    between them trades what the fine-tuning gained (here: real speech) against what it lost
    (here: the original synthetic domain) more gently than stopping the run earlier does.
    Integer buffers and the CMVN statistics must agree: they are not weights to blend. A run that
    widened the encoder's feed-forward modules (train.py --encoder-linear-units) blends with the
    base widened the same way: the new units' input weights are the run's, their output weights
    W times the run's, as if the base had them at zero output."""
    try:
        base_sd, _ = common.widen_feed_forward(base_sd, tuned_sd)
    except ValueError as e:
        raise SystemExit(f"--interpolate-from: {e}")
    # A converted model leaves out the decoders' positional tables (computed, not learnt).
    base_sd = dict(base_sd, **{k: v for k, v in tuned_sd.items() if k.endswith(".pe") and k not in base_sd})
    if set(base_sd) != set(tuned_sd):
        raise SystemExit("--interpolate-from: its weights have other names than the run's "
                         f"({sorted(set(base_sd) ^ set(tuned_sd))[:4]}...)")
    out = {}
    for k, v in tuned_sd.items():
        b = base_sd[k]
        if b.shape != v.shape:
            raise SystemExit(f"--interpolate-from: {k} has shape {tuple(b.shape)}, the run's {tuple(v.shape)}")
        if not v.is_floating_point() or "global_cmvn" in k:
            if not torch.equal(b.to(v.dtype), v):
                raise SystemExit(f"--interpolate-from: {k} differs; only weights of one --init chain blend")
            out[k] = v
        else:
            out[k] = ((1.0 - weight) * b.double() + weight * v.double()).float()
    return out


def dev_cer(cfg, sd, data, n):
    model = U2Model.from_checkpoint(cfg, sd)
    dev = common.FeatSet("dev", data, limit=n)
    err = common.ErrorRate()
    ids = sorted(range(len(dev)), key=lambda i: dev.index[i]["frames"])
    with torch.no_grad():
        for s in range(0, len(ids), 16):
            part = ids[s: s + 16]
            x, xl, _, _ = dev.collate(part)
            for i, h in zip(part, model.decode(x, xl, "ctc_greedy_search")):
                err.add(dev.index[i]["txt"], common.ids_to_text(h))
    return err.cer()


def pick_samples(a):
    """Short-to-medium test utterances with distinct voices -> --sample-dir (wavs, text, wav.scp)."""
    sample_dir = a.sample_dir
    os.makedirs(sample_dir, exist_ok=True)
    with open(os.path.join(a.data, "test", "data.jsonl")) as f:
        recs = [json.loads(line) for line in f]
    picked, voices = [], set()
    for r in recs:
        if 2.0 <= r["dur"] <= 4.5 and r["voice"] not in voices:
            picked.append(r)
            voices.add(r["voice"])
        if len(picked) == a.samples:
            break
    for old in glob.glob(os.path.join(sample_dir, "*.wav")):
        os.remove(old)
    with open(os.path.join(sample_dir, "text"), "w") as ft, open(os.path.join(sample_dir, "wav.scp"), "w") as fs:
        for r in picked:
            shutil.copy(r["wav"], os.path.join(sample_dir, r["key"] + ".wav"))
            ft.write(f"{r['key']} {r['txt']}\n")
            fs.write(f"{r['key']} {r['key']}.wav\n")
    with open(os.path.join(sample_dir, "voices.tsv"), "w") as f:
        f.write("key\tvoice\tspeed\tpitch\tamp\tdur\n")
        f.write("".join(f"{r['key']}\t{r['voice']}\t{r['speed']}\t{r['pitch']}\t{r['amp']}\t{r['dur']}\n"
                        for r in picked))
    print(f"{len(picked)} samples -> {sample_dir}", flush=True)


def run(cmd):
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exp", default=os.path.join(common.WORK, "exp"))
    ap.add_argument("--data", default=os.path.join(common.WORK, "data"))
    ap.add_argument("--export", default=os.path.join(common.WORK, "export"))
    ap.add_argument("--out", default=os.path.join(common.REPO, "models", "demo"))
    ap.add_argument("--sample-dir", default=os.path.join(common.REPO, "tests", "data", "samples"))
    ap.add_argument("--doc", default=os.path.join(common.REPO, "docs", "accuracy.md"))
    ap.add_argument("--prior", nargs="*", default=[],
                    help="checkpoints of the earlier runs this one continues (--init chain, oldest first): "
                         "their steps, audio and training time count into the totals")
    ap.add_argument("--avg", type=int, default=3)
    ap.add_argument("--avg-with", nargs="*", default=[],
                    help="earlier runs of the --init chain (exp folders, oldest first) whose last --avg "
                         "snapshots join the average")
    ap.add_argument("--no-select", action="store_true")
    ap.add_argument("--interpolate-from", default=None,
                    help="weights this run's --init chain started from (e.g. models/demo): "
                         "export (1 - W) * those + W * the average instead (implies --no-select)")
    ap.add_argument("--interpolate-weight", type=float, default=1.0,
                    help="W for --interpolate-from, in (0, 1]; pick it on the dev sets")
    ap.add_argument("--dev-utts", type=int, default=150)
    ap.add_argument("--samples", type=int, default=5, help="0 = keep the samples already there")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--eval-limit", type=int, default=0, help="utterances per test split (0 = all)")
    ap.add_argument("--chunks", type=int, nargs="+", default=[-1, 16],
                    help="decoding_chunk_size values to evaluate (-1 = full context)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctc-weight", type=float, default=None,
                    help="model.json's rescoring CTC weight (convert.py; default: train.yaml's 0.3)")
    ap.add_argument("--reverse-weight", type=float, default=None,
                    help="model.json's rescoring right-to-left weight (default: train.yaml's 0.3); "
                         "pick both with train/tune_decoding.py on dev")
    ap.add_argument("--beam-size", type=int, default=None,
                    help="model.json's CTC prefix beam width (convert.py; default 10); pick it on dev, "
                         "e.g. train/compare_models.py --beams")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    with open(os.path.join(a.exp, "train.yaml")) as f:
        cfg = yaml.safe_load(f)
    chosen = pick_snapshots(a.exp, a.avg, a.avg_with)
    print("averaging " + ", ".join(snapshot_name(p) for p in chosen), flush=True)
    avg_sd = average(chosen)
    final_sd, final_name = avg_sd, f"average of {len(chosen)} snapshots"
    if a.interpolate_from:
        if not 0.0 < a.interpolate_weight <= 1.0:
            raise SystemExit("--interpolate-weight must be in (0, 1]")
        final_sd = interpolate(common.load_weights(a.interpolate_from)[0], avg_sd, a.interpolate_weight)
        final_name = (f"{1 - a.interpolate_weight:g} x {a.interpolate_from} + "
                      f"{a.interpolate_weight:g} x the average of {len(chosen)} snapshots")
        print("exporting " + final_name, flush=True)
    elif not a.no_select and len(chosen) > 1:
        last_sd = common.load_checkpoint(chosen[-1])
        cer_avg = dev_cer(cfg, avg_sd, a.data, a.dev_utts)
        cer_last = dev_cer(cfg, last_sd, a.data, a.dev_utts)
        print(f"dev greedy CER ({a.dev_utts} utts): average {cer_avg:.2f} %, newest {cer_last:.2f} %", flush=True)
        if cer_last < cer_avg:
            final_sd, final_name = last_sd, "newest snapshot (better dev CER than the average)"
    steps = [int(re.search(r"step(\d+)", p).group(1)) for p in chosen]

    os.makedirs(a.export, exist_ok=True)
    torch.save(final_sd, os.path.join(a.export, "final.pt"))
    shutil.copy(os.path.join(a.exp, "train.yaml"), os.path.join(a.export, "train.yaml"))
    shutil.copy(os.path.join(a.exp, "global_cmvn"), os.path.join(a.export, "global_cmvn"))
    common.write_units(os.path.join(a.export, "units.txt"))

    if os.path.isdir(a.out):
        for f in ("model.json", "model.safetensors", "units.txt", "train.yaml", "global_cmvn"):
            if os.path.exists(os.path.join(a.out, f)):
                os.remove(os.path.join(a.out, f))
    run([PY, os.path.join(common.REPO, "tools", "convert.py"),
         "--config", os.path.join(a.export, "train.yaml"),
         "--checkpoint", os.path.join(a.export, "final.pt"),
         "--cmvn", os.path.join(a.export, "global_cmvn"),
         "--units", os.path.join(a.export, "units.txt"), "--out", a.out, "--dtype", "float16"]
        + [arg for flag, v in (("--ctc-weight", a.ctc_weight), ("--reverse-weight", a.reverse_weight),
                                ("--beam-size", a.beam_size))
           if v is not None for arg in (flag, str(v))])

    # No training checkpoint ships: the converted weights are what the next run continues from
    # (`train.py --init models/demo`); the run history goes beside them (see the module docstring).
    last_path = os.path.join(a.exp, "last.pt")
    ck = common.load_checkpoint(last_path)
    # The whole --init chain: named with --prior, else as train.py recorded it in the checkpoint.
    if a.prior:
        runs = [common.run_summary(common.load_checkpoint(p), p) for p in a.prior] + [common.run_summary(ck, last_path)]
    else:
        runs = common.run_history(ck, last_path)
    if a.samples > 0:
        pick_samples(a)

    # The run's own training data (train.py --data), which may differ from --data (the test sets).
    train_data = ck["args"].get("data") or a.data
    if not os.path.isabs(train_data):
        train_data = os.path.join(common.REPO, train_data)
    info = dict(final=final_name, snapshots=[snapshot_name(p) for p in chosen], snapshot_steps=steps,
                step=ck["step"], audio_h=ck["audio_s"] / 3600, train_min=ck["train_s"] / 60,
                args=ck["args"], train_hours=common.FeatSet("train", train_data).hours(),
                train_vowel_shifted=common.vowel_shifted_share("train", train_data),
                train_engines=common.engine_shares("train", train_data),
                params=sum(v.numel() for k, v in final_sd.items() if not k.endswith((".pe", "global_cmvn.mean",
                                                                                       "global_cmvn.istd"))))
    info.update(runs=runs, total_steps=sum(r["steps"] for r in runs),
                total_audio_h=sum(r["audio_h"] for r in runs), total_train_min=sum(r["train_min"] for r in runs))
    with open(os.path.join(a.export, "finalize.json"), "w") as f:
        json.dump(info, f, indent=1)
    runs_path = os.path.join(a.out, common.RUNS_FILE)
    os.makedirs(os.path.dirname(runs_path), exist_ok=True)
    stale = os.path.join(a.out, "training", "last.pt")
    if os.path.exists(stale):  # the checkpoint the demo model shipped before runs.json
        os.remove(stale)
    with open(runs_path, "w") as f:
        json.dump(dict(weights=final_name, runs=runs, last_run=common.last_run_record(info)), f, indent=1)
        f.write("\n")
    print(f"{runs_path}: {len(runs)} runs; continue with train.py --init {a.out}", flush=True)

    if a.skip_eval:
        return
    results = {}
    for chunk in a.chunks:
        out = os.path.join(a.export, f"eval_chunk{chunk}.json")
        cmd = [PY, os.path.join(common.ROOT, "eval_ref.py"), "--model-dir", a.export, "--chunk", str(chunk),
               "--json", out, "--threads", str(a.threads)]
        if a.eval_limit:
            cmd += ["--limit", str(a.eval_limit)]
        t0 = time.time()
        run(cmd)
        with open(out) as f:
            results[chunk] = json.load(f)
        results[chunk]["wall_s"] = time.time() - t0
    write_accuracy_md(info, results, a)


def write_accuracy_md(info, results, a):
    modes = ("ctc_greedy_search", "ctc_prefix_beam_search", "attention_rescoring")
    any_res = next(iter(results.values()))
    L = []
    L.append("# Demo model accuracy (PyTorch reference)\n")
    L.append(f"Model: `models/demo` (converted from `train/work/export/`), trained by `train/train.py` on this "
             f"project's synthetic espeak-ng corpus. Generated by `train/finalize.py` on "
             f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC.\n")
    L.append("**Status: under-trained.** This model was trained on 2 shared CPU cores for about "
             f"{info['train_min']:.0f} minutes. It is a pipeline demo, not a good recogniser; the target "
             "(<= 3 % CER attention rescoring on unseen sentences, <= 8 % on the held-out voice) needs "
             "the GPU recipe in `train/README.md`.\n")
    L.append("## Test sets\n")
    L.append("| set | utterances | audio | sentences | voices |\n|---|---|---|---|---|")
    for split, r in any_res["splits"].items():
        voices = ("seen accents x seen variants (random speed/pitch/amplitude), no noise" if split == "test" else
                  "held out of training: half variant `m3` (seen accents), half accent `en-gb-scotland` "
                  "(seen variants), no noise")
        L.append(f"| {split} | {r['utts']} | {r['hours']:.2f} h | never in train | {voices} |")
    L.append("\nCER = character edit distance / reference characters, where the spaces between words count "
             "as characters; WER = word edit distance / reference words. Features: 80-dim fbank, dither 0.\n")
    L.append("## Results\n")
    for chunk, res in results.items():
        ctx = "full context (decoding_chunk_size -1)" if chunk == -1 else f"streaming chunk {chunk} (decoding_chunk_size {chunk}, all left chunks)"
        L.append(f"### {ctx}\n")
        L.append(f"beam {res['beam']}, rescoring ctc_weight {res['ctc_weight']}, reverse_weight {res['reverse_weight']}\n")
        splits = list(res["splits"])
        L.append("| decoding mode | " + " | ".join(f"{s} CER | {s} WER" for s in splits) + " |")
        L.append("|---|" + "---|---|" * len(splits))
        for m in modes:
            L.append(f"| {m} | " + " | ".join(f"{res['splits'][s][m]['cer']:.2f} % | {res['splits'][s][m]['wer']:.2f} %"
                                             for s in splits) + " |")
        L.append("")
        L.append(f"Command: `.venv/bin/python train/eval_ref.py --model-dir train/work/export --chunk {chunk}"
                 + (f" --limit {a.eval_limit}" if a.eval_limit else "") + "`\n")
    ex = next(iter(any_res["splits"].values()))["hyps"]
    L.append("Examples (test, attention_rescoring, full context):\n\n```")
    for k in list(ex)[:: max(1, len(ex) // 4)][:4]:
        L.append(f"REF: {ex[k]['ref']}\nHYP: {ex[k]['attention_rescoring']}")
    L.append("```\n")
    L.append("## Training\n")
    L.extend(common.training_summary(info))
    L.append(f"* Run: {info['step']} steps, {info['audio_h']:.2f} h of audio processed "
             f"({info['audio_h'] / info['train_hours']:.2f} epochs), {info['train_min']:.0f} min of training "
             "time on 2 CPU cores shared with the team's builds.")
    L.append(f"* final.pt = {info['final']} ({', '.join(info['snapshots'])}).")
    L.append("* To continue training: `train.py --init models/demo` (the shipped float16 weights; the run "
             "history is in `models/demo/training/runs.json`).\n")
    L.append("## C++ engine\n")
    L.append("The same tables for the C++ engine come later, from `u2recognize` on the same test sets; they "
             "must match these PyTorch numbers.\n")
    path = a.doc
    with open(path, "w") as f:
        f.write("\n".join(L))
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
