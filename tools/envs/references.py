"""Random and expert reference returns for gato-rs's expert-normalised score, written to data/references.json.

    .cache/venv-record/bin/python tools/envs/references.py            # all five environments, the stated counts

Per environment: a uniform random policy (the action space's own sample(), seeded) and the scripted expert the
episodes are recorded with (tools/envs/adapters.py), each over its stated number of episodes from seeds
SEED + i (random) and SEED + 10_000 + i (expert), with the environment's own time limit. `gato eval` reads the file
and normalises a mean return as (return - random) / (expert - random).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_here, os.path.join(_here, "..", "record")]
from adapters import ENVS, make  # noqa: E402
from record import run_episode  # noqa: E402

EPISODES = {"cartpole": 100, "pendulum": 100, "babyai": 200, "breakout": 10, "metaworld": 50}
SEED = 2_000_000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="all")
    p.add_argument("--out", default=os.path.join(_here, "..", "..", "data", "references.json"))
    a = p.parse_args()
    names = ENVS if a.env == "all" else a.env.split(",")
    try:
        with open(a.out) as f:
            doc = json.load(f)
    except FileNotFoundError:
        doc = {"version": 1, "envs": {}}
    doc["how"] = (f"python tools/envs/references.py: per environment a uniform random policy (action_space.sample()) "
                  f"from seeds {SEED} + i and the scripted expert from seeds {SEED + 10_000} + i, "
                  f"episodes {json.dumps(EPISODES)}, the environments' own time limits")
    for name in names:
        t0 = time.time()
        env, env_id = make(name, SEED)
        env.action_space.seed(SEED)
        row = {"env_id": env_id}
        for policy, base in (("random", SEED), ("expert", SEED + 10_000)):
            n = EPISODES[name]
            returns = [float(np.sum(run_episode(name, env, policy, base + i, None)["rewards"], dtype=np.float64))
                       for i in range(n)]
            row[policy] = {"mean": float(np.mean(returns)), "std": float(np.std(returns)), "episodes": n}
        doc["envs"][name] = row
        print(f"{name:<10} random {row['random']['mean']:8.2f} ± {row['random']['std']:7.2f}   "
              f"expert {row['expert']['mean']:8.2f} ± {row['expert']['std']:7.2f}   {time.time() - t0:6.1f} s",
              flush=True)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
