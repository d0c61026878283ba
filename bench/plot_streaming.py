"""Plots `u2perf --streaming --output X.json` results: chunk latency (p50, p90, p99) and the lag of
the talkers against the number of concurrent streams, with the p99 budget, one panel per file.

    .venv/bin/python bench/plot_streaming.py results.json [more.json ...] --out streaming.png
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="u2perf --streaming JSON files")
    ap.add_argument("--out", required=True, help="PNG to write")
    args = ap.parse_args()
    docs = [json.load(open(path)) for path in args.results]
    fig, axes = plt.subplots(1, len(docs), figsize=(6 * len(docs), 4.2), squeeze=False)
    for ax, path, doc in zip(axes[0], args.results, docs):
        # Levels sorted by concurrency (a search runs them out of order); a level measured twice
        # keeps its last run.
        levels = {r["concurrency"]: r for r in doc["results"]}
        cs = sorted(levels)
        for key, style in (("p50", "o-"), ("p90", "s-"), ("p99", "^-")):
            ax.plot(cs, [levels[c]["latency_ms"][key] for c in cs], style, label=f"chunk latency {key}")
        # (lag can be 0: floored at 0.1 ms for the log scale)
        ax.plot(cs, [max(levels[c]["lag_ms"]["p99"], 0.1) for c in cs], "x--", label="talker lag p99")
        ax.axhline(doc["p99_budget_ms"], color="red", lw=1, label=f"p99 budget {doc['p99_budget_ms']:.0f} ms")
        held = doc["held_streams"]
        if held:
            ax.axvline(held, color="green", lw=1, ls=":", label=f"held: {held} streams")
        ax.set_xlabel("concurrent real-time streams" if doc["realtime"] else "concurrent streams (no pacing)")
        ax.set_ylabel("ms")
        ax.set_title(f"{doc['model']}: {doc['chunk_ms']} ms chunks ({path.rsplit('/', 1)[-1]})", fontsize=9)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)


if __name__ == "__main__":
    main()
