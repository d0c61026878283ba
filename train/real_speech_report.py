#!/usr/bin/env python3
"""Writes docs/real-speech.md: every change tried to make the demo model understand real human
speech, what each moved on the dev sets, and what would be needed next. It renders two committed
records, so the page can be rebuilt on any machine without the training logs:

  train/real_speech_experiments.json  the rounds of training (exp17 on): the question each asked,
                                      the runs with their in-training dev curves, the candidates
                                      (synthetic dev / real dev CER, compare_models.py) and which
                                      one shipped, plus the comparisons that isolate one change
  train/real_speech_checks.json       train/real_speech_checks.py's output: changes to the audio
                                      and to the decoding, on the shipped model

    .venv/bin/python train/real_speech_report.py [--plot docs/real-speech.png]
    .venv/bin/python train/real_speech_report.py --check          # is the page up to date?
    .venv/bin/python train/real_speech_report.py --import-curve exp24 exp24a=train/work/exp24a/train.log

The record is checked before anything is written: each round's shipped candidate must be the one
the selection rule picks (the lowest real-dev CER with synthetic dev within the bound, if it beats
the reference), so the page cannot claim a choice the numbers do not support. --import-curve
reads a run's dev curves from its train.log (train/plot_curves.py's parser) into a round.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import plot_curves  # noqa: E402

RECORD = os.path.join(common.REPO, "train", "real_speech_experiments.json")
CHECKS = os.path.join(common.REPO, "train", "real_speech_checks.json")
PAGE = os.path.join(common.REPO, "docs", "real-speech.md")
AXES = ("data source", "augmentation", "text", "data mix", "training length", "model size", "starting point",
        "blending")


class RecordError(ValueError):
    """The experiments record is malformed or contradicts itself."""


def candidate(rnd, name):
    """A round's candidate by name ("reference": the model it was compared with)."""
    if name == "reference":
        return rnd["reference"]
    for c in rnd["candidates"]:
        if c["name"] == name:
            return c
    raise RecordError(f"round {rnd['id']} has no candidate {name!r}")


def rule_pick(rnd, bound):
    """The candidate the selection rule ships, or None: the lowest real-dev CER among those with
    synthetic dev CER <= bound that beat the reference on real dev."""
    allowed = [c for c in rnd["candidates"]
               if c["synthetic_dev"] <= bound and c["real_dev"] < rnd["reference"]["real_dev"]]
    return min(allowed, key=lambda c: c["real_dev"]) if allowed else None


def check_numbers(where, c):
    for key in ("synthetic_dev", "real_dev"):
        v = c.get(key)
        if not isinstance(v, (int, float)) or not 0 <= v <= 200:
            raise RecordError(f"{where}: {key} must be a CER in percent, got {v!r}")


def validate(record):
    """Raises RecordError unless the record is complete and its shipped flags follow the rule."""
    for key in ("metric", "rule", "rounds", "comparisons", "next"):
        if key not in record:
            raise RecordError(f"the record has no {key!r}")
    bound = record["rule"].get("synthetic_dev_max")
    if not isinstance(bound, (int, float)):
        raise RecordError("rule.synthetic_dev_max must be a number")
    ids = set()
    for rnd in record["rounds"]:
        rid = rnd.get("id")
        if not rid or rid in ids:
            raise RecordError(f"every round needs a unique id, got {rid!r}")
        ids.add(rid)
        for key in ("axes", "question", "change", "runs", "reference", "candidates", "finding"):
            if key not in rnd:
                raise RecordError(f"round {rid} has no {key!r}")
        unknown = [a for a in rnd["axes"] if a not in AXES]
        if unknown:
            raise RecordError(f"round {rid}: unknown axis {unknown[0]!r} (one of: {', '.join(AXES)})")
        check_numbers(f"round {rid} reference", rnd["reference"])
        for c in rnd["candidates"]:
            check_numbers(f"round {rid} candidate {c.get('name')!r}", c)
        shipped = [c for c in rnd["candidates"] if c.get("shipped")]
        pick = rule_pick(rnd, bound)
        if len(shipped) > 1 or (shipped[0] if shipped else None) is not pick:
            want = pick["name"] if pick else "none"
            got = ", ".join(c["name"] for c in shipped) or "none"
            raise RecordError(f"round {rid}: the record ships {got}, the rule picks {want}")
        for run, info in rnd["runs"].items():
            for split, points in info.get("curve", {}).items():
                if any(len(p) != 3 for p in points):
                    raise RecordError(f"round {rid} run {run}: curve {split} points are [step, hours, CER]")
    by_id = {r["id"]: r for r in record["rounds"]}
    for comp in record["comparisons"]:
        for side in ("a", "b"):
            ref = comp[side]
            if ref["round"] not in by_id:
                raise RecordError(f"comparison {comp['question']!r} names round {ref['round']!r}")
            candidate(by_id[ref["round"]], ref["candidate"])


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise RecordError(f"cannot read {path}: {e}") from e


def fmt(v):
    return f"{v:.2f} %"


def delta(a, b):
    return f"{b - a:+.2f}"


def rounds_section(record):
    bound = record["rule"]["synthetic_dev_max"]
    lines = ["## Round by round\n",
             f"Each round trained one or two runs, exported candidates (the last 3 snapshots' average, blended "
             f"`(1 - W) x shipped + W x run` with `finalize.py --interpolate-weight W`) and compared them with a "
             f"reference: the shipped model, or the model an ablation started from. {record['rule']['text']}\n",
             "| round | changed | question | compared with (synthetic / real dev) | best real dev | "
             f"best within {bound} % synthetic | shipped | real dev moved |",
             "|---|---|---|---|---|---|---|---|"]
    for rnd in record["rounds"]:
        ref = rnd["reference"]
        best = min(rnd["candidates"], key=lambda c: c["real_dev"])
        within = [c for c in rnd["candidates"] if c["synthetic_dev"] <= bound]
        best_within = min(within, key=lambda c: c["real_dev"]) if within else None
        pick = rule_pick(rnd, bound)
        moved = delta(ref["real_dev"], pick["real_dev"]) if pick else \
            f"0 (best: {delta(ref['real_dev'], best['real_dev'])} at {fmt(best['synthetic_dev'])} synthetic)"
        lines.append(
            f"| {rnd['id']} | {', '.join(rnd['axes'])} | {rnd['question']} | {ref['name']}: "
            f"{fmt(ref['synthetic_dev'])} / {fmt(ref['real_dev'])} | {best['name']}: {fmt(best['synthetic_dev'])} / "
            f"{fmt(best['real_dev'])} | "
            + (f"{best_within['name']}: {fmt(best_within['synthetic_dev'])} / {fmt(best_within['real_dev'])}"
               if best_within else "none") + f" | {pick['name'] if pick else 'nothing'} | {moved} |")
    lines.append("")
    for rnd in record["rounds"]:
        lines.append(f"* **{rnd['id']}** ({rnd['date']}): {rnd['change']}. {rnd['finding']}")
    lines.append("")
    return lines


def comparisons_section(record):
    by_id = {r["id"]: r for r in record["rounds"]}
    lines = ["## What moved real-speech CER, and by how much\n",
             "One change at a time, from the rounds' own candidate tables (same round, same data and time, so the "
             "difference is the change; negative is better):\n",
             "| changed | comparison | real dev | synthetic dev |", "|---|---|---|---|"]
    for comp in record["comparisons"]:
        a = candidate(by_id[comp["a"]["round"]], comp["a"]["candidate"])
        b = candidate(by_id[comp["b"]["round"]], comp["b"]["candidate"])
        lines.append(f"| {comp['axis']} | {comp['question']} | {fmt(a['real_dev'])} -> {fmt(b['real_dev'])} "
                     f"(**{delta(a['real_dev'], b['real_dev'])}**) | {fmt(a['synthetic_dev'])} -> "
                     f"{fmt(b['synthetic_dev'])} ({delta(a['synthetic_dev'], b['synthetic_dev'])}) |")
    shipped = []
    for rnd in record["rounds"]:
        pick = rule_pick(rnd, record["rule"]["synthetic_dev_max"])
        if pick:
            shipped.append(f"{rnd['id']} {delta(rnd['reference']['real_dev'], pick['real_dev'])}")
        else:
            shipped.append(f"{rnd['id']} nothing")
    lines += ["", "Real-dev change of each round's shipped model: " + ", ".join(shipped) + ".", ""]
    return lines


def curves_section(record, plot_name):
    lines = ["## Dev-set curves\n",
             "In-training greedy CER (train.py `--eval-splits dev,real_dev:0`) at the start, at each evaluation and at "
             "the end of every run, synthetic dev / real dev (`-`: not measured; exp17-exp19 predate step-0 "
             "evaluations and real-dev hours):\n",
             "| round | run | start from | minutes | audio heard | steps | curve (step: synthetic / real dev) |",
             "|---|---|---|---|---|---|---|"]
    for rnd in record["rounds"]:
        for run, info in rnd["runs"].items():
            curve = info.get("curve", {})
            steps = sorted({p[0] for pts in curve.values() for p in pts})
            cells = []
            for step in steps:
                vals = []
                for split in ("dev", "real_dev"):
                    v = [p[2] for p in curve.get(split, []) if p[0] == step]
                    vals.append(f"{v[0]:.2f}" if v else "-")
                cells.append(f"{step}: {vals[0]} / {vals[1]}")
            lines.append(f"| {rnd['id']} | {run} | {info['start']} | {info['minutes']} | {info['audio_hours']} h | "
                         f"{info['steps']} | {'; '.join(cells)} |")
    lines += ["", f"![real-speech rounds]({plot_name})\n",
              f"Drawn by `.venv/bin/python train/real_speech_report.py --plot docs/{plot_name}`: left, every "
              "candidate's synthetic against real dev CER with the rule's bound; middle, real dev CER of each round's "
              "reference, candidates and shipped model; right, the in-training real-dev curves against the audio heard. "
              "`train/plot_curves.py` draws the same curves from train.log files while runs train.", ""]
    return lines


def checks_section(checks):
    if not checks:
        return []
    base = checks["baseline"]
    lines = ["## Where the errors are not\n",
             f"`{checks['command']}` on `{checks['model_dir']}`, {checks['set']} ({checks['utterances']} utterances), "
             f"attention rescoring; as recorded and without an LM: CER {fmt(base['cer'])}, WER {fmt(base['wer'])}. "
             "Each row against that run: the CER difference with its 95 % paired bootstrap interval and the utterances "
             "that got better or worse.\n"]
    for title, rows, note in (
            ("Changes to the audio (sox, no LM): if the recordings differed from the training audio in level, "
             "rate, pitch, bandwidth or tilt, one of these would help.", checks["audio"], True),
            ("Changes to the decoding (untouched audio):", checks["decoding"], False)):
        if not rows:
            continue
        lines += [title + "\n", "| change | what it tests | CER | WER | difference (points) | better / worse |",
                  "|---|---|---|---|---|---|"]
        for r in rows:
            what = r["what"] + (f" (`{r['sox']}`)" if note and r.get("sox") else "")
            lines.append(f"| {r['check']} | {what} | {fmt(r['cer'])} | {fmt(r['wer'])} | {r['delta']:+.2f} "
                         f"[{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}] | {r['better']} / {r['worse']} |")
        lines.append("")
    helped = [r for r in checks["audio"] if r["ci"][1] < 0]
    lines.append(("No change to the audio lowers the CER beyond noise: the model's errors on this voice are in what "
                  "it has learned of human speech, not in the recording's level, rate, pitch or channel."
                  if not helped else "Changes to the audio that lowered the CER beyond noise: "
                  + ", ".join(r["check"] for r in helped) + ".") + "\n")
    if checks["decoding"]:
        best = min(checks["decoding"], key=lambda r: r["delta"])
        lines.append(f"The best decoding change, {best['check']}, gains {-best['delta']:.2f} points: knowing which "
                     "words exist, and which follow which, cannot repair an acoustic model this far from the voice.\n")
    return lines


def render(record, checks, plot_name="real-speech.png"):
    validate(record)
    lines = ["# Real human speech: what was tried\n",
             "Generated by `.venv/bin/python train/real_speech_report.py` from `train/real_speech_experiments.json` "
             "and `train/real_speech_checks.json`; do not edit by hand. The demo model's test-set numbers (real "
             "speech, the unseen synthesizer, the synthetic sets, pocketsphinx on the same real half) are in "
             "[accuracy.md](accuracy.md); this page is about the dev sets, on which every choice was made.\n",
             f"Metric: {record['metric']}\n"]
    lines += rounds_section(record)
    lines += comparisons_section(record)
    lines += curves_section(record, plot_name)
    lines += checks_section(checks)
    lines += ["## What would be needed next\n"] + [f"* {item}" for item in record["next"]] + [""]
    lines += ["## Adding a round\n",
              "Train and compare as in train/README.md, then add the round to `train/real_speech_experiments.json` "
              "(its runs, candidates with `compare_models.py`'s numbers, `\"shipped\": true` on the one the rule "
              "picks), import each run's curves with `--import-curve ROUND RUN=train/work/RUN/train.log`, and "
              "re-render this page and the plot. Rerun `train/real_speech_checks.py --json "
              "train/real_speech_checks.json` when the shipped model changes.", ""]
    return "\n".join(lines)


def plot(record, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bound = record["rule"]["synthetic_dev_max"]
    fig, (left, mid, right) = plt.subplots(1, 3, figsize=(17, 4.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, rnd in enumerate(record["rounds"]):
        colour = colours[i % len(colours)]
        pick = rule_pick(rnd, bound)
        xs = [c["synthetic_dev"] for c in rnd["candidates"]]
        ys = [c["real_dev"] for c in rnd["candidates"]]
        left.scatter(xs, ys, color=colour, s=18, label=rnd["id"])
        mid.scatter([i] * len(ys), ys, color=colour, s=14, alpha=0.6)
        mid.scatter([i], [rnd["reference"]["real_dev"]], color="black", marker="_", s=200)
        if pick:
            left.scatter([pick["synthetic_dev"]], [pick["real_dev"]], facecolors="none", edgecolors="black", s=90)
            mid.scatter([i], [pick["real_dev"]], facecolors="none", edgecolors="black", s=90)
        for j, (run, info) in enumerate(rnd["runs"].items()):
            pts = [p for p in info.get("curve", {}).get("real_dev", []) if p[1] is not None]
            if len(pts) > 1:  # a round's second run dashed: same colour, other line
                right.plot([p[1] for p in pts], [p[2] for p in pts], "o-" if j == 0 else "o--", ms=3, color=colour,
                           label=run)
    left.axvline(bound, color="grey", ls="--", lw=1)
    left.set_xlabel("synthetic dev CER (%)")
    left.set_ylabel("real dev CER (%)")
    left.set_title(f"candidates (circled: shipped; dashed: {bound} % bound)", fontsize=10)
    left.legend(fontsize=7)
    mid.set_xticks(range(len(record["rounds"])), [r["id"] for r in record["rounds"]])
    mid.set_ylabel("real dev CER (%)")
    mid.set_title("per round: reference (bar), candidates, shipped (circled)", fontsize=10)
    right.set_xlabel("audio heard in the run (h)")
    right.set_ylabel("greedy real dev CER (%)")
    right.set_title("in-training curves", fontsize=10)
    right.legend(fontsize=7, ncol=2)
    for ax in (left, mid, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def import_curve(record, round_id, run_arg):
    """Puts the dev curves of a train.log (label=path) into the round's run of that label."""
    label, path = plot_curves.parse_run_arg(run_arg)
    rounds = [r for r in record["rounds"] if r["id"] == round_id]
    if not rounds:
        raise RecordError(f"no round {round_id!r} in the record")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            curves = plot_curves.parse_log(f)
    except OSError as e:
        raise RecordError(f"cannot read {path}: {e.strerror}") from e
    if not curves:
        raise RecordError(f"{path} has no evaluation lines (train.py --eval-splits)")
    run = rounds[0]["runs"].setdefault(label, {"start": "", "minutes": 0, "audio_hours": 0.0, "steps": 0})
    run["curve"] = {s: [[p[0], round(p[1], 2), p[2]] for p in pts] for s, pts in curves.items()}
    last = max(p[0] for pts in curves.values() for p in pts)
    run["steps"] = max(run.get("steps", 0), last)
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record", default=RECORD)
    ap.add_argument("--checks", default=CHECKS, help="real_speech_checks.py's JSON ('' for none)")
    ap.add_argument("--out", default=PAGE)
    ap.add_argument("--plot", help="also draw the figure to this PNG")
    ap.add_argument("--check", action="store_true", help="exit 1 if --out differs from what the records give")
    ap.add_argument("--import-curve", nargs=2, metavar=("ROUND", "RUN=LOG"),
                    help="read RUN's curves from its train.log into ROUND, rewrite the record, then render")
    a = ap.parse_args(argv)
    try:
        record = load(a.record)
        if a.import_curve:
            import_curve(record, *a.import_curve)
            with open(a.record, "w", encoding="utf-8") as f:
                json.dump(record, f, indent=1)
                f.write("\n")
        checks = load(a.checks) if a.checks else None
        text = render(record, checks)
    except RecordError as e:
        sys.exit(f"real_speech_report: {e}")
    if a.check:
        try:
            with open(a.out, encoding="utf-8") as f:
                current = f.read()
        except OSError:
            current = None
        if current != text:
            sys.exit(f"real_speech_report: {a.out} is out of date: run train/real_speech_report.py")
        print(f"{a.out} is up to date")
        return
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {a.out}")
    if a.plot:
        plot(record, a.plot)
        print(f"wrote {a.plot}")


if __name__ == "__main__":
    main()
