#!/usr/bin/env python3
"""Long-recording benchmark: a 1-hour recording built from real speech (the Asterisk prompts of
data/real_speech, repeated, with 0.3-3 s pauses of room noise) recognised

  * by u2recognize, VAD segments in batches (--long-audio-batch 8, the default),
  * by u2recognize, the same segments one by one (--long-audio-batch 1): the peer,
  * through u2serve (one OpenAI /v1/audio/transcriptions upload; segments go through the dynamic
    batcher),

plus the VAD alone (u2vad), each with its wall time, x real time and peak memory, in one run.
Results: bench/results/long_audio.{json,md} (docs/benchmarks.md quotes them).

    .venv/bin/python bench/long_audio_bench.py [--minutes 60] [--build build] [--threads 2]
"""
import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
import wave

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL = os.path.join(ROOT, "data", "real_speech", "asterisk_en", "all")


def build_recording(path, minutes, seed=3, keys=None):
    """Real clips (repeated) with pauses, written a clip at a time; the clips' keys, in order, are
    appended to `keys` if given (a clip cut at the end counts)."""
    lines = open(os.path.join(REAL, "wav.scp")).read().splitlines()
    rng = np.random.default_rng(seed)
    total, target = 0, int(minutes * 60 * 16000)
    with wave.open(path, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        while total < target:
            for line in lines:
                key, rel = line.split(" ", 1)
                with wave.open(os.path.join(REAL, rel)) as w:
                    clip = np.frombuffer(w.readframes(w.getnframes()), np.int16)
                pause = np.round(rng.uniform(-3, 3, int(16000 * rng.uniform(0.3, 3.0)))).astype(np.int16)
                piece = np.concatenate([clip, pause])[: target - total]
                out.writeframes(piece.tobytes())
                if keys is not None:
                    keys.append(key)
                total += len(piece)
                if total >= target:
                    break
    return total / 16000


def timed(cmd, work):
    """(wall seconds, peak RSS MiB, stdout) of one run (GNU time measures the peak)."""
    rss_file = os.path.join(work, "maxrss.txt")
    t0 = time.time()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file, *cmd], capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    with open(rss_file) as f:
        peak_kib = int(f.read().split()[-1])
    return wall, peak_kib / 1024, proc.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def through_server(a, path):
    http, grpc = free_port(), free_port()
    log = open(os.path.join(a.work, "u2serve.log"), "w")
    server = subprocess.Popen([os.path.join(a.apps, "u2serve"), "--model-dir", a.model, "--bind", "127.0.0.1",
                               "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", "-1",
                               "--workers", "1", "--threads", str(a.threads), "--max-request-bytes",
                               str(1 << 30)], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        from openai import OpenAI
        client = OpenAI(base_url=f"http://127.0.0.1:{http}/v1", api_key="x", max_retries=0, timeout=3600)
        t0 = time.time()
        with open(path, "rb") as f:
            text = client.audio.transcriptions.create(model="attention_rescoring", file=f).text
        wall = time.time() - t0
        with open(f"/proc/{server.pid}/status") as f:
            peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
        return wall, peak, text
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--build", default=os.environ.get("U2_BUILD_DIR", "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "long_audio"))
    a = ap.parse_args()
    a.apps = os.path.join(ROOT, a.build, "apps")
    a.work = os.path.join(ROOT, "bench", "work", "long_audio")
    os.makedirs(a.work, exist_ok=True)
    path = os.path.join(a.work, f"recording_{a.minutes:g}min.wav")
    seconds = build_recording(path, a.minutes)
    print(f"recording: {seconds / 60:.1f} min -> {path}", flush=True)

    rows = []
    u2r = [os.path.join(a.apps, "u2recognize"), "--model-dir", a.model, "--quiet", "--threads", str(a.threads),
           "--segment", "always", "--format", "json", path]
    wall, peak, out = timed([os.path.join(a.apps, "u2vad"), path], a.work)
    rows.append(dict(what="VAD alone (u2vad)", wall=wall, peak=peak, segments=len(out.splitlines())))
    for name, batch in (("u2recognize, segments batched by 8", "8"), ("u2recognize, segments one by one", "1")):
        wall, peak, out = timed(u2r + ["--long-audio-batch", batch], a.work)
        doc = json.loads(out)
        rows.append(dict(what=name, wall=wall, peak=peak, segments=len(doc["segments"]), text=doc["text"]))
        print(f"{name}: {wall:.1f} s", flush=True)
    wall, peak, text = through_server(a, path)
    rows.append(dict(what="u2serve, one OpenAI upload (dynamic batching)", wall=wall, peak=peak, text=text))
    same = rows[1]["text"] == rows[2]["text"] == text
    for r in rows:
        r["x_real_time"] = seconds / r["wall"]
        r.pop("text", None)
    info = dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), machine=platform.processor() or platform.machine(),
                cores=os.cpu_count(), threads=a.threads, audio_seconds=seconds, identical_text=same,
                command=f".venv/bin/python bench/long_audio_bench.py --minutes {a.minutes:g} --threads {a.threads}")
    with open(a.out + ".json", "w") as f:
        json.dump(dict(info=info, rows=rows), f, indent=1)
    lines = [f"{seconds / 60:.0f} minutes of real speech with pauses, {a.threads} threads, {info['date']}; "
             f"`{info['command']}`; batched, one-by-one and server transcripts identical: {same}.\n",
             "| run | wall s | x real time | peak memory MiB |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['wall']:.1f} | {r['x_real_time']:.0f} | {r['peak']:.0f} |")
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
