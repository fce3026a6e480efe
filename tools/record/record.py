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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gato_episodes import Field, write_episodes  # noqa: E402

os.environ.setdefault("MUJOCO_GL", "egl")


# ---------------------------------------------------------------- experts


def cartpole_expert(obs, _env):
    x, x_dot, theta, theta_dot = obs
    return int(theta * 10.0 + theta_dot * 2.0 + x * 0.1 + x_dot * 0.5 > 0)


def pendulum_expert(obs, _env):
    cos, sin, w = obs
    theta = np.arctan2(sin, cos)  # 0 = upright
    if cos > 0.85:  # near the top: PD
        u = -(12.0 * theta + 2.5 * w)
    else:  # energy pumping towards the upright energy (m = l = 1, g = 10)
        energy = 0.5 * w * w / 3.0 * 1.0 + 5.0 * (cos - 1.0) / 1.0
        u = 2.0 * np.sign(w * (0.0 - energy) + 1e-9) if abs(w) > 1e-3 else 2.0
    return np.array([np.clip(u, -2.0, 2.0)], dtype=np.float32)


def breakout_expert(_obs, env):
    ram = env.unwrapped.ale.getRAM()
    paddle_x, ball_x, ball_y = int(ram[72]), int(ram[99]), int(ram[101])
    if ball_y == 0 or ball_x == 0:  # ball not in play
        return 1  # FIRE
    target = ball_x - 15
    if paddle_x < target - 3:
        return 2  # RIGHT
    if paddle_x > target + 3:
        return 3  # LEFT
    return 0


# ---------------------------------------------------------------- environments


def make(name: str, seed: int):
    import gymnasium as gym

    if name == "cartpole":
        return gym.make("CartPole-v1"), "CartPole-v1"
    if name == "pendulum":
        return gym.make("Pendulum-v1"), "Pendulum-v1"
    if name == "babyai":
        import minigrid  # noqa: F401  (registers BabyAI)

        return gym.make("BabyAI-GoToLocal-v0"), "BabyAI-GoToLocal-v0"
    if name == "breakout":
        import ale_py

        gym.register_envs(ale_py)
        return gym.make("ALE/Breakout-v5", repeat_action_probability=0.0, max_episode_steps=2000), "ALE/Breakout-v5"
    if name == "metaworld":
        import metaworld  # noqa: F401

        return gym.make("Meta-World/MT1", env_name="reach-v3", seed=seed), "Meta-World/MT1/reach-v3"
    raise SystemExit(f"unknown env {name!r}; choose from {', '.join(ENVS)} or all")


def fields_for(name: str) -> list[Field]:
    if name == "cartpole":
        return [Field("continuous_observations", "observation", "continuous", [4], mu_law=True),
                Field("discrete_actions", "action", "discrete", [], num_values=2)]
    if name == "pendulum":
        return [Field("continuous_observations", "observation", "continuous", [3], mu_law=True),
                Field("continuous_actions", "action", "continuous", [1], mu_law=True, bounds=[-2.0, 2.0])]
    if name == "babyai":
        return [Field("text_observations", "observation", "text"),
                Field("discrete_observations", "observation", "discrete", [148], num_values=11),
                Field("discrete_actions", "action", "discrete", [], num_values=7)]
    if name == "breakout":
        return [Field("image_observations", "observation", "image", [80, 80, 3]),
                Field("discrete_actions", "action", "discrete", [], num_values=4)]
    if name == "metaworld":
        return [Field("continuous_observations", "observation", "continuous", [39], mu_law=True),
                Field("continuous_actions", "action", "continuous", [4], mu_law=False, bounds=[-1.0, 1.0])]
    raise ValueError(name)


def observation(name: str, obs):
    if name == "babyai":
        grid = np.asarray(obs["image"], dtype=np.int64).reshape(-1)
        return {"text_observations": obs["mission"],
                "discrete_observations": np.concatenate([[int(obs["direction"])], grid])}
    if name == "breakout":
        from PIL import Image

        frame = Image.fromarray(np.asarray(obs, dtype=np.uint8)).resize((80, 80), Image.BILINEAR)
        return {"image_observations": np.asarray(frame, dtype=np.uint8)}
    return {"continuous_observations": np.asarray(obs, dtype=np.float32)}


def action_field(name: str) -> str:
    return "continuous_actions" if name in ("pendulum", "metaworld") else "discrete_actions"


def run_episode(name: str, env, policy, seed: int, max_steps: int | None):
    obs, _ = env.reset(seed=seed)
    bot = None
    if name == "babyai" and policy == "expert":
        from minigrid.utils.baby_ai_bot import BabyAIBot

        bot = BabyAIBot(env.unwrapped)
    if name == "metaworld" and policy == "expert":
        from metaworld.policies import SawyerReachV3Policy

        scripted = SawyerReachV3Policy()
    ep: dict[str, list] = {"rewards": []}
    for t in range(10**6):
        o = observation(name, obs)
        if policy == "random":
            a = env.action_space.sample()
        elif name == "cartpole":
            a = cartpole_expert(obs, env)
        elif name == "pendulum":
            a = pendulum_expert(obs, env)
        elif name == "babyai":
            a = int(bot.replan())
        elif name == "breakout":
            a = breakout_expert(obs, env)
        else:
            a = np.clip(scripted.get_action(obs), -1.0, 1.0).astype(np.float32)
        for k, v in o.items():
            ep.setdefault(k, []).append(v)
        ep.setdefault(action_field(name), []).append(a)
        obs, r, term, trunc, _ = env.step(a)
        ep["rewards"].append(float(r))
        if term or trunc or (max_steps is not None and t + 1 >= max_steps):
            break
    return ep


ENVS = ["cartpole", "pendulum", "babyai", "breakout", "metaworld"]


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
