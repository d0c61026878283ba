#!/usr/bin/env python3
"""What an LM and hotwords cost in decoding time: u2recognize over the same utterances with
ctc_greedy (the encoder plus a trivial search: the floor), attention rescoring without an LM (the
peer), with n-gram shallow fusion, with a TLG graph, and with a hotword list, run in turns
(A B C ... A B C ...) so drift of a shared machine hits all alike. The search + rescoring time of
a configuration is its decode time minus ctc_greedy's; the table gives medians, x real time and
the ratio of each configuration's search + rescoring time to the peer's.

  .venv/bin/python bench/lm_decode_bench.py --set train/work/data/dev --num 100 \\
      --lm train/work/lm/indomain_synthetic.arpa --tlg train/work/lm/tlg_indomain_synthetic --runs 5
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", required=True, help="a directory with wav.scp and text")
    ap.add_argument("--num", type=int, default=100)
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "models", "demo"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--lm", help="ARPA LM for shallow fusion")
    ap.add_argument("--tlg", help="TLG folder")
    ap.add_argument("--lm-weight", default="0.3")
    ap.add_argument("--word-bonus", default="1")
    ap.add_argument("--beam", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()

    lines = open(os.path.join(a.set, "wav.scp")).read().splitlines()[: a.num]
    tmp = tempfile.mkdtemp()
    scp = os.path.join(tmp, "wav.scp")
    with open(scp, "w") as f:
        for line in lines:
            k, _, p = line.partition(" ")
            f.write(f"{k} {p if os.path.isabs(p) else os.path.join(os.path.abspath(a.set), p)}\n")
    hot = os.path.join(tmp, "hotwords.txt")
    words = sorted({w for line in open(os.path.join(a.set, "text")) for w in line.split()[1:] if len(w) >= 6})
    with open(hot, "w") as f:
        f.write("\n".join(words[:50]) + "\n")

    base = [os.path.join(a.build, "apps", "u2recognize"), "--model-dir", a.model_dir, "--wav-scp", scp,
            "--threads", "1", "--beam", str(a.beam)]
    configs = {
        "ctc_greedy (floor)": ["--mode", "ctc_greedy"],
        "rescoring, no LM (peer)": ["--mode", "attention_rescoring"],
        "rescoring + hotwords (50)": ["--mode", "attention_rescoring", "--hotwords", hot],
    }
    if a.lm:
        configs["rescoring + n-gram fusion"] = ["--mode", "attention_rescoring", "--lm", a.lm, "--lm-weight",
                                                a.lm_weight, "--word-bonus", a.word_bonus]
    if a.tlg:
        configs["rescoring + TLG"] = ["--mode", "attention_rescoring", "--tlg", a.tlg, "--lm-weight", a.lm_weight,
                                      "--word-bonus", a.word_bonus]
    times = {name: [] for name in configs}
    audio = None
    for run in range(a.runs):
        for name, extra in configs.items():
            print(f"\rrun {run + 1}/{a.runs}: {name:32s}", end="", file=sys.stderr, flush=True)
            cmd = base + extra
            # Only the configuration's own LM or graph, never one the model folder brings.
            cmd += [] if "--lm" in extra else ["--lm", "none"]
            cmd += [] if "--tlg" in extra else ["--tlg", "none"]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(r.stderr)
            m = re.search(r"\(([\d.]+) s of audio in ([\d.]+) s", r.stderr)
            audio = float(m.group(1))
            times[name].append(float(m.group(2)))
    print(file=sys.stderr)
    floor = statistics.median(times["ctc_greedy (floor)"])
    peer = statistics.median(times["rescoring, no LM (peer)"]) - floor
    print(f"{len(lines)} utterances, {audio:.1f} s of audio, beam {a.beam}, 1 thread, median of {a.runs} runs "
          f"(min-max of the decode time in brackets)\n")
    print("| configuration | decode s | x real time | search + rescoring s | vs the peer's search + rescoring |")
    print("|---|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        search = med - floor
        ratio = "" if name.startswith("ctc_greedy") else f"{search / peer:.2f}x"
        print(f"| {name} | {med:.2f} [{min(ts):.2f}-{max(ts):.2f}] | {audio / med:.0f} | "
              f"{search:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
