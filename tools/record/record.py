"""Record expert episodes from real simulators into gato-rs episode files (docs/episode-format.md).

    python tools/record/record.py --env cartpole --episodes 20 --out .cache/episodes
    python tools/record/record.py --env all --episodes 10 --out .cache/episodes

Environments and experts (all offline; ROMs ship inside ale-py):
  cartpole   CartPole-v1, PD controller on pole angle and cart position (scores 500)
  pendulum   Pendulum-v1, energy pumping + PD stabilisation near the top
  babyai     BabyAI-GoToLocal-v0 (minigrid), the shipped BabyAIBot: mission text, 7x7x3 grid + direction, 7 actions
  breakout   ALE/Breakout-v5, a RAM-reading controller (paddle follows the ball), frames resized to 80x80 RGB
  metaworld  Meta-World reach-v3 (MT1) with its shipped scripted policy: 39 proprioceptive values, 4 actions

Episodes are filtered as in the paper (§3): keep those whose return, normalised between a random policy (0) and
the expert's mean (1), is at least 0.8. A per-environment summary is printed at the end.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from tqdm import tqdm

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_here, os.path.join(_here, "..", "envs")]
from adapters import ENVS, Expert, action_field, fields_for, make, observation  # noqa: E402
from gato_episodes import write_episodes  # noqa: E402


def run_episode(name: str, env, policy, seed: int, max_steps: int | None):
    obs, _ = env.reset(seed=seed)
    expert = Expert(name, env) if policy == "expert" else None
    ep: dict[str, list] = {"rewards": []}
    for t in range(10**6):
        o = observation(name, obs)
        a = env.action_space.sample() if expert is None else expert.act(obs)
        for k, v in o.items():
            ep.setdefault(k, []).append(v)
        ep.setdefault(action_field(name), []).append(a)
        obs, r, term, trunc, _ = env.step(a)
        ep["rewards"].append(float(r))
        if term or trunc or (max_steps is not None and t + 1 >= max_steps):
            break
    return ep


def record(name: str, episodes: int, out: str, seed: int, max_steps: int | None, tag: str) -> dict:
    env, env_id = make(name, seed)
    env.action_space.seed(seed)
    # Random-policy baseline for the return normalisation (§3 filtering).
    random_returns = [sum(run_episode(name, env, "random", seed + 10_000 + i, max_steps)["rewards"]) for i in range(3)]
    kept, returns = [], []
    t0 = time.time()
    for i in tqdm(range(episodes), desc=f"{name:<10}", unit="ep"):
        ep = run_episode(name, env, "expert", seed + i, max_steps)
        ep["return"] = float(np.sum(ep["rewards"], dtype=np.float64))
        returns.append(ep["return"])
        kept.append(ep)
    expert, rand = float(np.mean(returns)), float(np.mean(random_returns))
    span = expert - rand
    keep = [e for e in kept if span <= 0 or (e["return"] - rand) / span >= 0.8]
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}{tag}.safetensors")
    write_episodes(path, env_id, fields_for(name), keep, extra={
        "policy": "expert", "expert_return": expert, "random_return": rand,
        "filter": "normalised return >= 0.8", "truncated_at": max_steps,
    })
    steps = sum(len(e["rewards"]) for e in keep)
    return {"env": env_id, "file": path, "recorded": episodes, "kept": len(keep), "steps": steps,
            "mean_return": float(np.mean([e["return"] for e in keep])) if keep else float("nan"),
            "random_return": rand, "seconds": time.time() - t0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="all", help=f"one of {', '.join(ENVS)}, or all")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--out", default=".cache/episodes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None, help="truncate episodes (for small bundled samples)")
    p.add_argument("--tag", default="", help="suffix of the file name")
    a = p.parse_args()
    names = ENVS if a.env == "all" else [a.env]
    rows = [record(n, a.episodes, a.out, a.seed, a.max_steps, a.tag) for n in names]
    print(f"\n{'env':<26} {'kept/rec':>9} {'steps':>7} {'mean return':>12} {'random':>9} {'time':>7}  file")
    for r in rows:
        print(f"{r['env']:<26} {r['kept']:>4}/{r['recorded']:<4} {r['steps']:>7} {r['mean_return']:>12.1f} "
              f"{r['random_return']:>9.1f} {r['seconds']:>6.1f}s  {r['file']}")


if __name__ == "__main__":
    main()
