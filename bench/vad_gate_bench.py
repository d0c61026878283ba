#!/usr/bin/env python3
"""The VAD gate on a live stream: a recording of real speech with pauses (the Asterisk prompts of
data/real_speech, 0.3-3 s pauses of room noise; bench/long_audio_bench.py builds it) decoded as
one live stream by u2recognize --streaming (640 ms pieces, chunk 16, attention rescoring)

  * as a plain stream: every chunk decoded, a segment ends only where the positions run out;
  * with --vad-gate: the pauses are skipped and each pause ends a segment,

each with its wall time, x real time and CER against the prompts' texts, in one run.
Results: bench/results/vad_gate.{json,md}.

    .venv/bin/python bench/vad_gate_bench.py [--minutes 10] [--build build] [--threads 1]
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from long_audio_bench import REAL, ROOT, build_recording  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--build", default=os.environ.get("U2_BUILD_DIR", "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "vad_gate"))
    a = ap.parse_args()
    work = os.path.join(ROOT, "bench", "work", "vad_gate")
    os.makedirs(work, exist_ok=True)
    name = f"recording_{a.minutes:g}min"
    path = os.path.join(work, name + ".wav")
    keys = []
    seconds = build_recording(path, a.minutes, keys=keys)
    texts = dict(line.split(" ", 1) for line in open(os.path.join(REAL, "text")).read().splitlines())
    reference = os.path.join(work, "text")
    with open(reference, "w") as f:
        f.write(f"{name} {' '.join(texts[k] for k in keys)}\n")
    print(f"recording: {seconds / 60:.1f} min, {len(keys)} prompts -> {path}", flush=True)

    cmd = [os.path.join(ROOT, a.build, "apps", "u2recognize"), "--model-dir", a.model, "--threads", str(a.threads),
           "--streaming", "--piece-ms", "640", "--segment", "never", "--format", "json", "--text", reference, path]
    rows = []
    for what, extra in (("plain stream", []), ("stream with --vad-gate", ["--vad-gate"])):
        t0 = time.time()
        proc = subprocess.run(cmd + extra, capture_output=True, text=True)
        wall = time.time() - t0
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd + extra)} failed:\n{proc.stderr[-2000:]}")
        cer = float(re.search(r"CER ([0-9.]+) %", proc.stderr).group(1))
        segments = len(json.loads(proc.stdout)["segments"])
        rows.append(dict(what=what, wall=wall, x_real_time=seconds / wall, cer=cer, caption_segments=segments))
        print(f"{what}: {wall:.1f} s, CER {cer:.2f} %", flush=True)
    info = dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                machine=platform.processor() or platform.machine(), cores=os.cpu_count(), threads=a.threads,
                audio_seconds=seconds, command=f".venv/bin/python bench/vad_gate_bench.py --minutes {a.minutes:g} "
                                               f"--threads {a.threads}")
    with open(a.out + ".json", "w") as f:
        json.dump(dict(info=info, rows=rows), f, indent=1)
    lines = [f"{seconds / 60:.0f} minutes of real speech with pauses as one live stream, {a.threads} thread(s), "
             f"{info['date']}; `{info['command']}`.\n",
             "| run | wall s | x real time | CER % |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['wall']:.1f} | {r['x_real_time']:.0f} | {r['cer']:.2f} |")
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
