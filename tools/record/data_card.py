"""Print the data card rows (docs/data.md) for a directory the recorder wrote: per domain the episodes kept of
recorded, timesteps, tokens, the mean return of the kept and of the discarded episodes, seeds and recording time.

    .cache/venv-record/bin/python tools/record/data_card.py .cache/data-v1

Tokens per timestep follow the sequence layout (docs/design.md §4) with the default presets: one token per
discrete or continuous value, one per 16x16 image patch, one per UTF-8 byte of text (the `bytes` tokenizer), one
separator; they are summed over every kept timestep.
"""
from __future__ import annotations

import json
import os
import sys

sys.path[:0] = [os.path.dirname(os.path.abspath(__file__))]
from gato_episodes import read_episodes  # noqa: E402

PATCH = 16


def tokens(fields, ep) -> int:
    steps = len(ep["rewards"])
    n = steps  # separators
    for f in fields:
        if f["modality"] == "text":
            n += sum(len(s.encode("utf-8")) for s in ep[f["name"]])
        elif f["modality"] == "image":
            h, w, _ = f["shape"]
            n += steps * (-(-h // PATCH)) * (-(-w // PATCH))
        else:
            size = 1
            for d in f["shape"]:
                size *= d
            n += steps * size
    return n


def main() -> None:
    out = sys.argv[1]
    with open(os.path.join(out, "summary.json")) as f:
        rows = json.load(f)
    print("| domain | episodes kept / recorded | timesteps | tokens | kept mean return | discarded mean return "
          "| random | seeds | recording time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        meta, eps = read_episodes(r["file"])
        fields = json.loads(meta["fields"])
        tok = sum(tokens(fields, e) for e in eps)
        disc = "–" if r["discarded_mean_return"] != r["discarded_mean_return"] else f"{r['discarded_mean_return']:.1f}"
        print(f"| {r['env']} | {r['kept']} / {r['recorded']} | {r['steps']:,} | {tok:,} | {r['mean_return']:.2f} | "
              f"{disc} | {r['random_return']:.1f} | {r['seeds']} | {r['seconds']:.0f} s ({r['workers']} workers) |")


if __name__ == "__main__":
    main()
