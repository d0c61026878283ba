"""CER of the demo model at --precision int8 next to fp32, on every test set (synthetic and real
speech), offline and streaming, and how often int8's n-best lists agree with fp32's (issue 28).

    .venv/bin/python train/int8_report.py [--model-dir models/demo] [--build-dir build] [--num N]
                                         [--out bench/results/int8_accuracy]

For each set × mode it runs build/apps/u2recognize twice (fp32, int8) with --nbest 10 and scores
both with the project's one CER/WER definition (common.ErrorRate), with a paired bootstrap 95 %
interval of the CER difference (utterances resampled together, as compare_models.py does): on a
small set at 40 % CER a few reordered near-ties move the CER by tenths of a point. Agreement: the share of
utterances whose best hypothesis is the same text, and whose whole n-best list (texts, in order)
is the same. Writes OUT.json and OUT.md (a table; docs/accuracy.md quotes it); progress on stderr.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, WORK, ErrorRate, read_table, write_subset_scp  # noqa: E402
from compare_models import paired_bootstrap, per_utterance_errors  # noqa: E402

# (name, folder with wav.scp + text, kind)
SETS = [
    ("dev", os.path.join(WORK, "data", "dev"), "synthetic"),
    ("test", os.path.join(WORK, "data", "test"), "synthetic"),
    ("test_heldout_voice", os.path.join(WORK, "data", "test_heldout_voice"), "synthetic"),
    ("test_unseen_synth", os.path.join(WORK, "data", "test_unseen_synth"), "synthetic"),
    ("real_dev", os.path.join(REPO, "data", "real_speech", "asterisk_en", "dev"), "real speech"),
    ("real_test", os.path.join(REPO, "data", "real_speech", "asterisk_en", "test"), "real speech"),
]
MODES = [
    ("offline", ["--mode", "attention_rescoring"]),
    ("streaming chunk 16", ["--streaming", "--chunk-size", "16", "--left-chunks", "-1"]),
]
NBEST = 10


def run_nbest(build_dir, model_dir, scp, precision, mode_args, threads):
    """-> ({utt: [hypothesis text, ...] best first}, seconds)."""
    cmd = [os.path.join(build_dir, "apps", "u2recognize"), "--model-dir", model_dir, "--wav-scp", scp,
           "--precision", precision, "--nbest", str(NBEST), "--threads", str(threads), "--batch-size", "8",
           *mode_args]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("u2recognize failed (%s):\n%s" % (" ".join(cmd), p.stderr[-2000:]))
    nbest = {}
    for line in p.stdout.splitlines():
        parts = line.split(" ", 3)  # utt rank score text
        if len(parts) < 3:
            continue
        nbest.setdefault(parts[0], []).append(parts[3] if len(parts) == 4 else "")
    return nbest, time.time() - t0


def markdown_table(rows):
    """The report's rows as Markdown table lines (OUT.md, quoted by docs/accuracy.md)."""
    lines = ["| set | kind | mode | utterances | fp32 CER | int8 CER | Δ CER (points) | Δ 95 % interval | fp32 WER | "
             f"int8 WER | same best | same {NBEST}-best list |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        n = r["utterances"]
        low, high = r["delta_cer_ci95"]
        lines.append(f"| {r['set']} | {r['kind']} | {r['mode']} | {n} | {r['fp32_cer']:.2f} % | {r['int8_cer']:.2f} % | "
                     f"{r['int8_cer'] - r['fp32_cer']:+.2f} | [{low:+.2f}, {high:+.2f}] | {r['fp32_wer']:.2f} % | "
                     f"{r['int8_wer']:.2f} % | {100.0 * r['same_best'] / n:.1f} % | {100.0 * r['same_nbest'] / n:.1f} % |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=os.path.join(REPO, "models", "demo"))
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--num", type=int, default=0, help="first N utterances of each set (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results", "int8_accuracy"))
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, folder, kind in SETS:
            if not os.path.exists(os.path.join(folder, "wav.scp")):
                print("[int8_report] %s: %s missing, skipped (train/README.md, tools/fetch_real_speech.py)"
                      % (name, folder), file=sys.stderr)
                continue
            refs = read_table(os.path.join(folder, "text"), args.num)
            scp = os.path.join(tmp, name + ".scp")
            write_subset_scp(os.path.join(folder, "wav.scp"), list(refs), scp)
            for mode, mode_args in MODES:
                results, errors = {}, {}
                for precision in ("fp32", "int8"):
                    nbest, secs = run_nbest(args.build_dir, args.model_dir, scp, precision, mode_args, args.threads)
                    er = ErrorRate()
                    errors[precision], lengths = per_utterance_errors(
                        refs, {utt: hyps[0] for utt, hyps in nbest.items() if hyps}, er)
                    results[precision] = (nbest, er, secs)
                    print("[int8_report] %s, %s, %s: CER %.2f %% WER %.2f %% (%d utterances, %.0f s)"
                          % (name, mode, precision, er.cer(), er.wer(), len(refs), secs), file=sys.stderr)
                a, b = results["fp32"][0], results["int8"][0]
                same_best = sum((a.get(u) or [""])[0] == (b.get(u) or [""])[0] for u in refs)
                same_list = sum(a.get(u, []) == b.get(u, []) for u in refs)
                # Whether a difference is more than the luck of which utterances the set holds.
                low, high = paired_bootstrap(errors["fp32"], errors["int8"], lengths)
                rows.append({
                    "set": name, "kind": kind, "mode": mode, "utterances": len(refs),
                    "fp32_cer": results["fp32"][1].cer(), "int8_cer": results["int8"][1].cer(),
                    "fp32_wer": results["fp32"][1].wer(), "int8_wer": results["int8"][1].wer(),
                    "same_best": same_best, "same_nbest": same_list, "delta_cer_ci95": [low, high],
                    "fp32_seconds": results["fp32"][2], "int8_seconds": results["int8"][2],
                })
    meta = {"model_dir": os.path.relpath(args.model_dir, REPO), "nbest": NBEST, "threads": args.threads,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": "train/int8_report.py" + (" --num %d" % args.num if args.num else "")}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    lines = markdown_table(rows)
    with open(args.out + ".md", "w") as f:
        f.write("# int8 vs fp32 accuracy (%s, %s)\n\nCommand: `.venv/bin/python %s`\n\n%s\n"
                % (meta["model_dir"], meta["date"], meta["command"], "\n".join(lines)))
    print("\n".join(lines))
    worst = max((abs(r["int8_cer"] - r["fp32_cer"]) for r in rows), default=0.0)
    print("[int8_report] largest |int8 - fp32| CER difference: %.2f points (target <= 0.3)" % worst, file=sys.stderr)


if __name__ == "__main__":
    main()
