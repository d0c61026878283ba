#!/usr/bin/env python3
"""Prints bench.jsonl (u2gpubench and torch_peer.py lines) as a Markdown table: audio seconds per
second for each model, mode and batch, one column per backend/precision."""
import json
import sys


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    cols = []
    for r in rows:
        c = "%s %s" % ("u2serve" if not r["backend"].startswith("pytorch") else "torch", r["gemm_math"])
        if c not in cols:
            cols.append(c)
    table = {}
    for r in rows:
        c = "%s %s" % ("u2serve" if not r["backend"].startswith("pytorch") else "torch", r["gemm_math"])
        key = (r["model"], r["mode"], r["batch"])
        table.setdefault(key, {})[c] = ("err" if "error" in r else "%.0f" % r["audio_s_per_s"])
    clip = rows[0]["clip_seconds"] if rows else 0
    print("audio seconds per second (%gs clips; encoder = Encode incl. CTC log-probs download; "
          "full = fbank + Encode + 10-best attention scoring)" % clip)
    print("| model | mode | batch | " + " | ".join(cols) + " |")
    print("|---|---|---:|" + "---:|" * len(cols))
    for (model, mode, batch) in sorted(table, key=lambda k: (k[0], k[1], k[2])):
        cells = table[(model, mode, batch)]
        print("| %s | %s | %d | %s |" % (model, mode, batch, " | ".join(cells.get(c, "-") for c in cols)))


if __name__ == "__main__":
    main()
