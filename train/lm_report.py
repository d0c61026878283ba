#!/usr/bin/env python3
"""Measures n-gram LM fusion on the demo model: builds the LMs of docs/language-models.md (from the
text train/make_lm_text.py writes), tunes lm_weight / word_bonus on the synthetic dev set, then
reports CER, WER and decoding speed on every evaluation set without an LM, with a general-English
LM and with an in-domain LM, as a Markdown table (and a plot).

  .venv/bin/python train/make_lm_text.py
  .venv/bin/python train/lm_report.py --out docs/lm_report.md --plot docs/lm_report.png

In-domain means: for the synthetic sets, the GNU info manuals their sentences were drawn from
(every evaluation sentence removed) plus the model's technical training text; for the real-speech
halves, the transcripts of the other half (the prompts share a domain and phrasing, not sentences).
The weights are chosen on the synthetic dev set only; test sets are only reported.
"""
import argparse
import itertools
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = os.path.join(ROOT, ".venv", "bin", "python")

SETS = {  # name: (directory, in-domain LM)
    "synthetic dev": ("train/work/data/dev", "indomain_synthetic"),
    "synthetic test": ("train/work/data/test", "indomain_synthetic"),
    "real dev": ("data/real_speech/asterisk_en/dev", "real_test_transcripts"),
    "real test": ("data/real_speech/asterisk_en/test", "real_dev_transcripts"),
}
LMS = {  # name: (texts, order, prune)
    "general": (["general.txt"], 3, 1e-8),
    "indomain_synthetic": (["info_indomain.txt", "technical.txt"], 3, 1e-8),
    "real_dev_transcripts": (["real_dev.txt"], 3, 0.0),
    "real_test_transcripts": (["real_test.txt"], 3, 0.0),
}


def build_lms(lm_dir, units):
    paths = {}
    for name, (texts, order, prune) in LMS.items():
        out = os.path.join(lm_dir, f"{name}.arpa")
        paths[name] = out
        if os.path.exists(out):
            continue
        print(f"building {out}", file=sys.stderr, flush=True)
        cmd = [PY, os.path.join(ROOT, "tools", "build_lm.py"), "--order", str(order), "--units", units, "--out", out]
        if prune:
            cmd += ["--prune", str(prune)]
        for t in texts:
            cmd += ["--text", os.path.join(lm_dir, t)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return paths


def build_tlgs(lm_dir, lms, units, names):
    out = {}
    for name in names:
        d = os.path.join(lm_dir, f"tlg_{name}")
        out[name] = d
        if os.path.exists(os.path.join(d, "TLG.fst")):
            continue
        print(f"building {d}", file=sys.stderr, flush=True)
        subprocess.run([PY, os.path.join(ROOT, "tools", "build_tlg.py"), "--units", units, "--lm", lms[name],
                        "--out", d], check=True)
    return out


def decode(a, directory, lm=None, weight=0.0, bonus=0.0, tlg=None):
    d = os.path.join(ROOT, directory)
    cmd = [os.path.join(a.build, "apps", "u2recognize"), "--model-dir", a.model_dir, "--mode", a.mode,
           "--beam", str(a.beam), "--wav-scp", os.path.join(d, "wav.scp"), "--text", os.path.join(d, "text"),
           "--threads", "1"]
    # Only the LM or graph under test, never the one the model folder brings.
    if lm:
        cmd += ["--lm", lm, "--tlg", "none", "--lm-weight", str(weight), "--word-bonus", str(bonus)]
    elif tlg:
        cmd += ["--tlg", tlg, "--lm", "none", "--lm-weight", str(weight), "--word-bonus", str(bonus)]
    else:
        cmd += ["--lm", "none", "--tlg", "none"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr)
    cer = float(re.search(r"CER ([\d.]+) %", r.stderr).group(1))
    wer = float(re.search(r"WER ([\d.]+) %", r.stderr).group(1))
    xrt = float(re.search(r"([\d.]+)x real time", r.stderr).group(1))
    return cer, wer, xrt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lm-dir", default=os.path.join(ROOT, "train", "work", "lm"))
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "models", "demo"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--mode", default="attention_rescoring")
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--weights", default="0.1,0.3,0.5,0.8")
    ap.add_argument("--bonuses", default="0,1,2")
    ap.add_argument("--out", help="write the Markdown report here (default: stdout)")
    ap.add_argument("--plot", help="CER per set and LM as a bar chart (PNG)")
    ap.add_argument("--tlg", action="store_true", help="also decode with TLG graphs of the same LMs (tools/build_tlg.py)")
    ap.add_argument("--tlg-weights", default="0.3,0.5,0.8")
    a = ap.parse_args()

    lms = build_lms(a.lm_dir, os.path.join(a.model_dir, "units.txt"))
    lines = [f"Model {os.path.relpath(a.model_dir, ROOT)}, {a.mode}, beam {a.beam}, 1 thread; "
             f"command: `.venv/bin/python train/lm_report.py`", ""]

    # Tune on the synthetic dev set: the in-domain LM and the general one, each its own weights.
    dev_dir = SETS["synthetic dev"][0]
    chosen = {}
    lines += ["Weights on the synthetic dev set (CER / WER %):", "",
              "| LM | lm_weight | word_bonus | CER | WER |", "|---|---|---|---|---|"]
    for lm_name in ("indomain_synthetic", "general"):
        best = None
        grid = list(itertools.product([float(w) for w in a.weights.split(",")],
                                      [float(b) for b in a.bonuses.split(",")]))
        for i, (w, b) in enumerate(grid):
            print(f"\rtuning {lm_name}: {i + 1}/{len(grid)}", end="", file=sys.stderr, flush=True)
            cer, wer, _ = decode(a, dev_dir, lms[lm_name], w, b)
            lines.append(f"| {lm_name} | {w:g} | {b:g} | {cer:.2f} | {wer:.2f} |")
            if best is None or (cer, wer) < best[0]:
                best = ((cer, wer), w, b)
        print(file=sys.stderr)
        chosen[lm_name] = (best[1], best[2])
    lines += ["", "Chosen (lowest dev CER): " + ", ".join(f"{k}: lm_weight {w:g}, word_bonus {b:g}"
                                                            for k, (w, b) in chosen.items()), ""]

    # Report every set: none, general, in-domain (the in-domain weights of the synthetic dev set).
    lines += ["| set | no LM CER / WER | general LM | in-domain LM | speed (x real time) none / general / in-domain |",
              "|---|---|---|---|---|"]
    results = {}
    for set_name, (directory, indomain) in SETS.items():
        if not os.path.exists(os.path.join(ROOT, directory, "wav.scp")):
            continue
        print(f"{set_name} ...", file=sys.stderr, flush=True)
        none = decode(a, directory)
        gen = decode(a, directory, lms["general"], *chosen["general"])
        ind = decode(a, directory, lms[indomain], *chosen["indomain_synthetic"])
        results[set_name] = (none, gen, ind)
        lines.append(f"| {set_name} | {none[0]:.2f} / {none[1]:.2f} | {gen[0]:.2f} / {gen[1]:.2f} | "
                     f"{ind[0]:.2f} / {ind[1]:.2f} | {none[2]:.0f} / {gen[2]:.0f} / {ind[2]:.0f} |")
    if a.tlg:
        tlgs = build_tlgs(a.lm_dir, lms, os.path.join(a.model_dir, "units.txt"),
                          ["indomain_synthetic", "general", "real_dev_transcripts", "real_test_transcripts"])
        best = None
        lines += ["", "TLG (WFST) decoding, weights on the synthetic dev set, in-domain graph:", "",
                  "| lm_weight | word_bonus | CER | WER |", "|---|---|---|---|"]
        grid = list(itertools.product([float(w) for w in a.tlg_weights.split(",")],
                                      [float(b) for b in a.bonuses.split(",")]))
        for i, (w, b) in enumerate(grid):
            print(f"\rtuning TLG: {i + 1}/{len(grid)}", end="", file=sys.stderr, flush=True)
            cer, wer, _ = decode(a, dev_dir, tlg=tlgs["indomain_synthetic"], weight=w, bonus=b)
            lines.append(f"| {w:g} | {b:g} | {cer:.2f} | {wer:.2f} |")
            if best is None or (cer, wer) < best[0]:
                best = ((cer, wer), w, b)
        print(file=sys.stderr)
        tw = (best[1], best[2])
        lines += ["", f"Chosen: lm_weight {tw[0]:g}, word_bonus {tw[1]:g}", "",
                  "| set | shallow fusion, in-domain LM | TLG, in-domain | TLG, general | speed (x real time) fusion / TLG in-domain |",
                  "|---|---|---|---|---|"]
        for set_name, (directory, indomain) in SETS.items():
            if set_name not in results:
                continue
            ind = results[set_name][2]
            t_ind = decode(a, directory, tlg=tlgs[indomain], weight=tw[0], bonus=tw[1])
            t_gen = decode(a, directory, tlg=tlgs["general"], weight=tw[0], bonus=tw[1])
            lines.append(f"| {set_name} | {ind[0]:.2f} / {ind[1]:.2f} | {t_ind[0]:.2f} / {t_ind[1]:.2f} | "
                         f"{t_gen[0]:.2f} / {t_gen[1]:.2f} | {ind[2]:.0f} / {t_ind[2]:.0f} |")
    text = "\n".join(lines) + "\n"
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    print(text)
    if a.plot and results:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        names = list(results)
        for ax, idx, label in ((axes[0], 0, "CER %"), (axes[1], 1, "WER %")):
            for k, lm_label in enumerate(("no LM", "general LM", "in-domain LM")):
                ax.bar([i + 0.27 * (k - 1) for i in range(len(names))], [results[n][k][idx] for n in names],
                       width=0.27, label=lm_label)
            ax.set_xticks(range(len(names)), names, rotation=15)
            ax.set_ylabel(label)
            ax.set_yscale("log")
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(a.plot)


if __name__ == "__main__":
    main()
