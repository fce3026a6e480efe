"""Record expert episodes from real simulators into gato-rs episode files (docs/episode-format.md).

    python tools/record/record.py --env cartpole --episodes 20 --out .cache/episodes
    python tools/record/record.py --env all --episodes 10 --out .cache/episodes

Environments and experts (all offline; ROMs ship inside ale-py):
  cartpole   CartPole-v1, PD controller on pole angle and cart position (scores 500)
  pendulum   Pendulum-v1, energy pumping + PD stabilisation near the top
  babyai     BabyAI-GoToLocal-v0 (minigrid), the shipped BabyAIBot: mission text, 7x7x3 grid + direction, 7 actions
  breakout   ALE/Breakout-v5, a RAM-reading controller that predicts where the ball lands and looks 12 steps ahead in
             a copy of the emulator (tools/envs/adapters.py), frames resized to 80x80 RGB
  metaworld  Meta-World reach-v3 (MT1) with its shipped scripted policy: 39 proprioceptive values, 4 actions

Episodes are filtered as in the paper (§3): keep those whose return, normalised between a random policy (0) and
the expert's mean (1), is at least 0.8. Episode i is recorded from seed --seed + i; with --workers N, N processes
record episodes in parallel and the episodes do not depend on N. A per-environment summary is printed at the end and
written to OUT/summary.json (kept and discarded returns, steps, seeds, time) for the data card, docs/data.md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
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
    env.action_space.seed(seed)  # the random policy's draws depend on the episode's seed only
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


_worker_env: dict = {}


def _play(job):
    """One episode in a worker process (each keeps one environment per name)."""
    name, policy, seed, max_steps, make_seed = job
    if name == "metaworld":
        # MT1 samples the task from the environment's own history of resets: a fresh environment per episode,
        # made from the episode's seed, keeps an episode independent of which worker records it.
        env, env_id = make(name, seed)
    else:
        if name not in _worker_env:
            _worker_env[name] = make(name, make_seed)
        env, env_id = _worker_env[name]
    ep = run_episode(name, env, policy, seed, max_steps)
    ep["return"] = float(np.sum(ep["rewards"], dtype=np.float64))
    ep["seed"] = seed
    ep["env_id"] = env_id
    return ep


def record(name: str, episodes: int, out: str, seed: int, max_steps: int | None, tag: str, workers: int = 1) -> dict:
    """Record `episodes` expert episodes of `name` from seeds `seed + i` (in `workers` processes; the result does not
    depend on their number), keep those at >= 0.8 of the expert's normalised return, write them in seed order."""
    t0 = time.time()
    jobs = [(name, "random", seed + 10_000 + i, max_steps, seed) for i in range(3)]
    jobs += [(name, "expert", seed + i, max_steps, seed) for i in range(episodes)]
    if workers > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers) as pool:
            done = list(tqdm(pool.imap(_play, jobs), total=len(jobs), desc=f"{name:<10}", unit="ep"))
    else:
        done = [_play(j) for j in tqdm(jobs, desc=f"{name:<10}", unit="ep")]
    # Random-policy baseline for the return normalisation (§3 filtering).
    random_returns = [e["return"] for e in done[:3]]
    kept = done[3:]
    returns = [e["return"] for e in kept]
    env_id = done[0]["env_id"]  # the simulator's id, as the workers made it
    expert, rand = float(np.mean(returns)), float(np.mean(random_returns))
    span = expert - rand
    keep = [e for e in kept if span <= 0 or (e["return"] - rand) / span >= 0.8]
    dropped = [e for e in kept if not (span <= 0 or (e["return"] - rand) / span >= 0.8)]
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}{tag}.safetensors")
    write_episodes(path, env_id, fields_for(name), keep, extra={
        "policy": "expert", "expert_return": expert, "random_return": rand,
        "filter": "normalised return >= 0.8", "truncated_at": max_steps,
        "seeds": [e["seed"] for e in keep],
    })
    steps = sum(len(e["rewards"]) for e in keep)
    mean = (lambda es: float(np.mean([e["return"] for e in es])) if es else float("nan"))
    return {"env": env_id, "file": path, "recorded": episodes, "kept": len(keep), "steps": steps,
            "mean_return": mean(keep), "discarded_mean_return": mean(dropped), "random_return": rand,
            "seeds": f"{seed}..{seed + episodes - 1}", "seconds": time.time() - t0, "workers": workers}


def episode_counts(spec: str, names: list, parser: argparse.ArgumentParser) -> dict:
    """`N` or `N,env=M,...`: the episodes each of `names` records (an exception for an unknown or unchosen env
    is an error)."""
    default, per = None, {}
    for part in spec.split(","):
        name, eq, n = part.strip().rpartition("=")
        try:
            count = int(n)
        except ValueError:
            parser.error(f"--episodes: `{part}` is not N or ENV=N")
        if count < 1:
            parser.error(f"--episodes: {count} is out of range: at least 1")
        if not eq:
            default = count
        elif name not in names:
            parser.error(f"--episodes: `{name}` is not among the recorded environments ({', '.join(names)})")
        else:
            per[name] = count
    missing = [n for n in names if n not in per and default is None]
    if missing:
        parser.error(f"--episodes: no count for {', '.join(missing)} (give N for every environment)")
    return {n: per.get(n, default) for n in names}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="all", help=f"one of {', '.join(ENVS)}, or all")
    p.add_argument("--episodes", default="10",
                   help="episodes per domain: N, or N with per-domain exceptions, e.g. 100,babyai=2000")
    p.add_argument("--out", default=".cache/episodes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None, help="truncate episodes (for small bundled samples)")
    p.add_argument("--tag", default="", help="suffix of the file name")
    p.add_argument("--workers", type=int, default=1, help="worker processes (episodes in parallel)")
    a = p.parse_args()
    names = ENVS if a.env == "all" else a.env.split(",")
    counts = episode_counts(a.episodes, names, p)
    rows = [record(n, counts[n], a.out, a.seed, a.max_steps, a.tag, a.workers) for n in names]
    # Merge into the directory's summary: a domain recorded again replaces its row.
    summary_path = os.path.join(a.out, f"summary{a.tag}.json")
    try:
        with open(summary_path) as f:
            old = [r for r in json.load(f) if r["env"] not in {x["env"] for x in rows}]
    except (FileNotFoundError, ValueError):
        old = []
    with open(summary_path, "w") as f:
        json.dump(old + rows, f, indent=1)
    print(f"\n{'env':<26} {'kept/rec':>9} {'steps':>7} {'kept return':>12} {'discarded':>10} {'random':>9} {'time':>7}  file")
    for r in rows:
        print(f"{r['env']:<26} {r['kept']:>4}/{r['recorded']:<4} {r['steps']:>7} {r['mean_return']:>12.1f} "
              f"{r['discarded_mean_return']:>10.1f} {r['random_return']:>9.1f} {r['seconds']:>6.1f}s  {r['file']}")


if __name__ == "__main__":
    main()
