#!/usr/bin/env python3
"""Prints bench.jsonl as Markdown tables.

Offline (u2gpubench and torch_peer.py lines, no "kind"): audio seconds per second for each model,
mode and batch, one column per backend/precision.

Streaming ("kind": "stream" lines of u2gpustream and torch_stream_peer.py), printed last: per
engine, arrival, utterance length and number of streams the chunk latency p50/p99 (ms), the
DecodeStreams call p99, the mean batch, the longest tick's work (aligned arrivals: it must fit in the
640 ms tick), whether it is real-time (p99 <= budget and kept up), and
device memory per stream; then the largest real-time number of streams per configuration (the
target: >= 5,000 streams at p99 <= 200 ms on one H100, u2serve staggered)."""
import json
import sys


def engine(r):
    return "%s %s" % ("torch" if r["backend"].startswith("pytorch") else "u2serve", r["gemm_math"])


def offline_table(rows):
    if not rows:
        return
    cols = []
    for r in rows:
        if engine(r) not in cols:
            cols.append(engine(r))
    table = {}
    for r in rows:
        key = (r["model"], r["mode"], r["batch"])
        table.setdefault(key, {})[engine(r)] = ("err" if "error" in r else "%.0f" % r["audio_s_per_s"])
    clip = rows[0]["clip_seconds"]
    print("audio seconds per second (%gs clips; encoder = Encode incl. CTC log-probs download; "
          "full = fbank + Encode + 10-best attention scoring)" % clip)
    print("| model | mode | batch | " + " | ".join(cols) + " |")
    print("|---|---|---:|" + "---:|" * len(cols))
    for (model, mode, batch) in sorted(table, key=lambda k: (k[0], k[1], k[2])):
        cells = table[(model, mode, batch)]
        print("| %s | %s | %d | %s |" % (model, mode, batch, " | ".join(cells.get(c, "-") for c in cols)))


def mb(x):
    return "%.2f" % (x / 1e6) if isinstance(x, (int, float)) and x >= 0 else "-"


def stream_table(rows):
    if not rows:
        return
    r0 = rows[0]
    print()
    print("streaming (%s): chunk %d (%g ms of audio per stream per tick), %d left chunks; latency = chunk's audio "
          "arrived -> its partial result out (u2serve: fbank + encoder + CTC prefix search + partial; torch: "
          "encoder + CTC top-k to host only)" % (r0["model"], r0["chunk"], r0["tick_ms"], r0["left_chunks"]))
    print("| engine | arrival | utterances | streams | p50 ms | p99 ms | call p99 ms | mean batch | tick max ms "
          "| real-time | device MB/stream | state MB/stream |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")

    def key(r):
        return (engine(r), r["arrival"], r.get("utterance_s", 0), r["streams"])

    for r in sorted(rows, key=key):
        utt = "%gs + rescoring" % r["utterance_s"] if r.get("utterance_s") else "endless"
        if "error" in r:
            print("| %s | %s | %s | %d | error: %s ||||||||" % (engine(r), r["arrival"], utt, r["streams"],
                                                              r["error"][:60]))
            continue
        lat = r["latency_ms"]
        call = r.get("decode_call_ms", {}).get("p99")
        if r.get("realtime"):
            rt = "yes"
        elif not r.get("kept_up", True):
            rt = "no (fell behind)"
        else:
            rt = "no"
        dev = r.get("device_pool_bytes_per_stream", r.get("device_bytes_per_stream", -1))
        tick = r.get("tick_work_ms", {}).get("max")  # aligned: the tick's whole work (real time: <= tick)
        print("| %s | %s | %s | %d | %.1f | %.1f | %s | %.1f | %s | %s | %s | %s |" % (
            engine(r), r["arrival"], utt, r["streams"], lat["p50"], lat["p99"],
            "%.1f" % call if call is not None else "-", r.get("mean_batch", 0),
            "%.1f" % tick if tick is not None else "-", rt, mb(dev),
            mb(r.get("state_bytes_per_stream", -1))))
    best = {}
    for r in rows:
        k = (engine(r), r["arrival"], r.get("utterance_s", 0))
        best.setdefault(k, [0, 0])
        if r.get("realtime"):
            best[k][0] = max(best[k][0], r["streams"])
    for r in rows:
        k = (engine(r), r["arrival"], r.get("utterance_s", 0))
        if not r.get("realtime") and "error" not in r and r["streams"] > best[k][0]:
            best[k][1] = r["streams"] if not best[k][1] else min(best[k][1], r["streams"])
    print()
    print("largest number of real-time streams (p99 <= %g ms), target >= 5000 on one H100:" % r0["budget_ms"])
    for (eng, arrival, utt), (ok, bad) in sorted(best.items()):
        print("  %-16s %-9s %-16s %6d%s" % (eng, arrival, ("%gs utterances" % utt) if utt else "endless", ok,
                                            ("   (%d was not)" % bad) if bad else "   (no larger N failed)"))


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    offline_table([r for r in rows if "kind" not in r])
    stream_table([r for r in rows if r.get("kind") == "stream"])


if __name__ == "__main__":
    main()
