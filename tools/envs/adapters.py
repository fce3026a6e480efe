"""Environment adapters shared by the recorder (tools/record/record.py) and the live worker (tools/envs/worker.py):
which simulator each environment name makes, its fields as gato-rs episode files describe them
(docs/episode-format.md), how a raw observation becomes those fields, how an action field becomes the simulator's
action, and the scripted experts. A live observation reaches the sequence builder exactly as a recorded one does
because both go through `observation()` here.
"""
from __future__ import annotations

import os
import sys

import numpy as np

# gato_episodes (the episode file writer and its Field) lives with the recorder; beside this file when the gato
# binary unpacks the worker into a directory of its own.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [_here, os.path.join(_here, "..", "record")]
from gato_episodes import Field  # noqa: E402

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


ENVS = ["cartpole", "pendulum", "babyai", "breakout", "metaworld"]


def make(name: str, seed: int, render: bool = False):
    import gymnasium as gym

    mode = {"render_mode": "rgb_array"} if render else {}
    if name == "cartpole":
        return gym.make("CartPole-v1", **mode), "CartPole-v1"
    if name == "pendulum":
        return gym.make("Pendulum-v1", **mode), "Pendulum-v1"
    if name == "babyai":
        import minigrid  # noqa: F401  (registers BabyAI)

        return gym.make("BabyAI-GoToLocal-v0", **mode), "BabyAI-GoToLocal-v0"
    if name == "breakout":
        import ale_py

        gym.register_envs(ale_py)
        return gym.make("ALE/Breakout-v5", repeat_action_probability=0.0, max_episode_steps=2000,
                        **mode), "ALE/Breakout-v5"
    if name == "metaworld":
        import metaworld  # noqa: F401

        return gym.make("Meta-World/MT1", env_name="reach-v3", seed=seed, **mode), "Meta-World/MT1/reach-v3"
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


def env_action(name: str, action: dict):
    """The simulator's action from action fields by name (as the agent decoded them)."""
    if name in ("pendulum", "metaworld"):
        return np.asarray(action["continuous_actions"], dtype=np.float32).reshape(-1)
    return int(np.asarray(action["discrete_actions"]).reshape(-1)[0])


def success(name: str, reward: float, terminated: bool, info: dict):
    """Whether the task was solved at this step, for tasks that report success (None otherwise)."""
    if name == "metaworld":
        return bool(info.get("success", 0.0) >= 1.0)
    if name == "babyai":
        return bool(terminated and reward > 0)
    return None


class Expert:
    """The scripted expert of `name`, started for one episode of `env` (some keep state across steps)."""

    def __init__(self, name: str, env):
        self.name, self.env = name, env
        if name == "babyai":
            from minigrid.utils.baby_ai_bot import BabyAIBot

            self.bot = BabyAIBot(env.unwrapped)
        if name == "metaworld":
            from metaworld.policies import SawyerReachV3Policy

            self.scripted = SawyerReachV3Policy()

    def act(self, obs):
        n = self.name
        if n == "cartpole":
            return cartpole_expert(obs, self.env)
        if n == "pendulum":
            return pendulum_expert(obs, self.env)
        if n == "babyai":
            return int(self.bot.replan())
        if n == "breakout":
            return breakout_expert(obs, self.env)
        return np.clip(self.scripted.get_action(obs), -1.0, 1.0).astype(np.float32)
