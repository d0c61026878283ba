"""Plots the dev-set curves of training runs from their train.log: the greedy CER train.py measures
every --eval-minutes on each --eval-splits set, against the audio the run has heard (or its step),
one panel per dev set, one line per run. This is how runs that try different data, augmentation
or model sizes are compared while they train (train/README.md).

    .venv/bin/python train/plot_curves.py run1=train/work/exp1/train.log \\
        run2=train/work/exp2/train.log --out curves.png

train.py measures the weights a run starts from before its first step ("eval step 0"), so each
curve begins where its run began. For logs from before that, --start [LABEL=]CER,CER,... gives the
starting weights' CER (measured the same way, one value per dev set) for the run LABEL, or without
a label for every run; it is drawn at x = 0. --json prints the points.
"""
import argparse
import json
import re
import sys

# train.py's progress line ("step 80 epoch 0 ... | 0.41 h seen, ...") and its evaluation lines
# ("eval step 1403: real_dev greedy CER 47.63 % WER ..."; "final step ..." once at the end).
PROGRESS = re.compile(r"^step (\d+) .*\| ([\d.]+) h seen")
EVAL = re.compile(r"^(?:eval|final) step (\d+): (\S+) greedy CER ([\d.]+) %")


def parse_log(lines):
    """{split: [(step, hours heard, CER), ...]} from a train.log's lines. The hours at an
    evaluation are those of the last progress line at or before its step (0 before the first)."""
    curves = {}
    hours = 0.0
    for line in lines:
        m = PROGRESS.match(line)
        if m:
            hours = float(m.group(2))
            continue
        m = EVAL.match(line)
        if m:
            step, split, cer = int(m.group(1)), m.group(2), float(m.group(3))
            points = curves.setdefault(split, [])
            # The final evaluation repeats a periodic one that fell on the same step.
            if points and points[-1][0] == step:
                points[-1] = (step, hours, cer)
            else:
                points.append((step, hours, cer))
    return curves


def parse_run_arg(text):
    """'label=path' or 'path' (the label is then the run folder's name)."""
    if "=" in text:
        label, path = text.split("=", 1)
    else:
        path = text
        parts = path.replace("\\", "/").rstrip("/").split("/")
        label = parts[-2] if len(parts) > 1 else parts[-1]
    return label, path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="train.log files, as label=path or path")
    ap.add_argument("--x", choices=("hours", "step"), default="hours",
                    help="x axis: audio heard (hours) or optimizer steps")
    ap.add_argument("--start", action="append", default=[],
                    help="[LABEL=]CER,CER,...: the starting weights' CER, one per dev set in the order "
                         "the logs name them, for run LABEL (default: every run), drawn at x = 0")
    ap.add_argument("--out", help="PNG to write")
    ap.add_argument("--json", action="store_true", help="print the parsed curves as JSON")
    a = ap.parse_args(argv)

    runs = {}
    for arg in a.runs:
        label, path = parse_run_arg(arg)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                runs[label] = parse_log(f)
        except OSError as e:
            sys.exit(f"plot_curves: cannot read {path}: {e.strerror}")
    splits = []
    for curves in runs.values():
        splits += [s for s in curves if s not in splits]
    if not splits:
        sys.exit("plot_curves: no evaluation lines in the logs (train.py --eval-minutes / --eval-splits)")
    start_cer = {}  # run -> the CER per dev set of its starting weights; a run's own --start wins
    for item in sorted(a.start, key=lambda item: "=" in item):
        label, _, numbers = item.rpartition("=")
        if label and label not in runs:
            sys.exit(f"plot_curves: --start names run {label!r}, not one of {', '.join(runs)}")
        try:
            values = [float(v) for v in numbers.split(",")]
        except ValueError:
            sys.exit(f"plot_curves: --start wants numbers separated by commas, got {numbers!r}")
        if len(values) != len(splits):
            sys.exit(f"plot_curves: --start has {len(values)} values for {len(splits)} dev sets ({', '.join(splits)})")
        for name in [label] if label else runs:
            start_cer[name] = values
    for name, values in start_cer.items():
        for split, cer in zip(splits, values):
            points = runs[name].setdefault(split, [])
            if not points or points[0][0] != 0:  # the log's own step 0 wins
                points.insert(0, (0, 0.0, cer))

    if a.json:
        print(json.dumps({label: {s: [{"step": p[0], "hours": p[1], "cer": p[2]} for p in pts]
                                  for s, pts in curves.items()} for label, curves in runs.items()}, indent=1))
    if not a.out:
        return

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(splits), figsize=(5.5 * len(splits), 4), squeeze=False)
    for ax, split in zip(axes[0], splits):
        for label, curves in runs.items():
            pts = curves.get(split, [])
            xs = [p[1] if a.x == "hours" else p[0] for p in pts]
            ax.plot(xs, [p[2] for p in pts], "o-", label=label)
        ax.set_title(f"{split}: greedy CER during training", fontsize=10)
        ax.set_xlabel("audio heard (h)" if a.x == "hours" else "step")
        ax.set_ylabel("CER (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
