"""A live simulator for gato-rs: the Rust side (`gato eval`, gato_agent::bridge) spawns this worker and talks to it
over stdin/stdout in length-prefixed frames (docs/env-protocol.md):

    frame   = header_len: u32 LE | payload_len: u32 LE | header: UTF-8 JSON | payload: raw little-endian arrays
    header  = {"type": ..., ..., "arrays": [{"name", "dtype", "shape", "offset"}, ...]}

Requests: reset {seed, render} (render: send a frame with each observation of this episode), step (+ one array per action field), expert (the scripted expert's action for the current
state), close. Replies: hello (first, unasked: the fields), observation (+ one array per numeric field, text in the
header, optionally a rendered frame), action (+ arrays), error {message}. The worker exits on close, at the end of
its input, or when its parent dies.

    python tools/envs/worker.py --env cartpole [--seed S] [--render]

`--env mock` is a pure-Python task for protocol tests (no simulator packages); GATO_WORKER_FAULT=crash@N,
hang@N or garbage@N makes it misbehave at its N-th step, for the Rust side's robustness tests (with
GATO_WORKER_FAULT_ONCE=FILE, only the first worker to get there does, and it creates FILE).
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time

PROTOCOL = 1
MAX_HEADER = 1 << 20
MAX_PAYLOAD = 1 << 30


def die_with_parent():
    """Linux: get SIGTERM when the parent process dies, so a killed gato leaves no orphan worker."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl
            sys.exit(0)
    except (OSError, AttributeError):
        pass


def read_exact(f, n):
    b = f.read(n)
    if b is None or len(b) < n:
        return None
    return b


def read_frame(f):
    head = read_exact(f, 8)
    if head is None:
        return None, None
    hlen, plen = struct.unpack("<II", head)
    if hlen > MAX_HEADER or plen > MAX_PAYLOAD:
        raise ValueError(f"frame of {hlen} + {plen} bytes is over the limits")
    header = json.loads(read_exact(f, hlen) or b"null")
    payload = read_exact(f, plen) if plen else b""
    if not isinstance(header, dict) or payload is None:
        raise ValueError("truncated or malformed frame")
    import numpy as np

    arrays = {}
    for a in header.get("arrays", []):
        dt = np.dtype(a["dtype"]).newbyteorder("<")
        count = int(np.prod(a["shape"], dtype=np.int64))
        arrays[a["name"]] = np.frombuffer(payload, dtype=dt, count=count, offset=int(a["offset"])).reshape(a["shape"])
    return header, arrays


def write_frame(f, header, arrays=None):
    parts, offset, described = [], 0, []
    for name, a in (arrays or {}).items():
        import numpy as np

        a = np.ascontiguousarray(a)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        described.append({"name": name, "dtype": a.dtype.name, "shape": list(a.shape), "offset": offset})
        b = a.tobytes()
        parts.append(b)
        offset += len(b)
    header = dict(header, arrays=described)
    h = json.dumps(header).encode()
    f.write(struct.pack("<II", len(h), offset) + h + b"".join(parts))
    f.flush()


# ---------------------------------------------------------------- the mock task (no simulator packages)


class Mock:
    """Observe a value in [0, 4); the action equal to it earns 1. 10 steps. Deterministic given the seed."""

    env_id = "gato-mock-v0"

    def __init__(self):
        self.fault = os.environ.get("GATO_WORKER_FAULT", "")
        self.steps_taken = 0

    def fields(self):
        return [{"name": "discrete_observations", "role": "observation", "modality": "discrete", "shape": [1],
                 "dtype": "int64", "num_values": 4},
                {"name": "discrete_actions", "role": "action", "modality": "discrete", "shape": [],
                 "dtype": "int64", "num_values": 4}]

    def reset(self, seed, render=False):
        self.state, self.t = seed % 4, 0
        return self.obs(0.0, False)

    def obs(self, reward, done):
        import numpy as np

        return {"reward": reward, "terminated": done, "truncated": False, "success": None}, {
            "discrete_observations": np.array([self.state], dtype=np.int64)}

    def step(self, action):
        self.steps_taken += 1
        kind, _, at = self.fault.partition("@")
        once = os.environ.get("GATO_WORKER_FAULT_ONCE")
        if at and self.steps_taken == int(at) and not (once and os.path.exists(once)):
            if once:
                open(once, "w").close()
            if kind == "crash":
                os._exit(3)
            if kind == "hang":
                time.sleep(3600)
            if kind == "garbage":
                sys.__stdout__.buffer.write(b"\xff\xff\xff\x7f not a frame")
                sys.__stdout__.buffer.flush()
        a = int(action["discrete_actions"].reshape(-1)[0])
        if not 0 <= a < 4:
            raise ValueError(f"action {a} outside Discrete(4)")
        reward = 1.0 if a == self.state else 0.0
        self.t += 1
        self.state = (self.state * 3 + 1) % 4
        return self.obs(reward, self.t >= 10)

    def expert(self):
        import numpy as np

        return {"discrete_actions": np.array(self.state, dtype=np.int64)}


# ---------------------------------------------------------------- the real simulators


class Simulator:
    def __init__(self, name, seed, render):
        import numpy as np

        from adapters import fields_for, make

        self.np = np
        self.name = name
        self.env, self.env_id = make(name, seed, render=render)
        self.render = render
        self.field_list = fields_for(name)
        self.raw = None
        self.expert_policy = None
        self.want_frame = False

    def fields(self):
        return [f.describe() for f in self.field_list]

    def reset(self, seed, render=False):
        from adapters import Expert

        self.want_frame = render
        self.raw, _ = self.env.reset(seed=seed)
        self.expert_policy = Expert(self.name, self.env)
        return self.obs(0.0, False, False, None)

    def obs(self, reward, terminated, truncated, success):
        from adapters import observation

        fields = observation(self.name, self.raw)
        header = {"reward": float(reward), "terminated": bool(terminated), "truncated": bool(truncated),
                  "success": success, "text": {k: v for k, v in fields.items() if isinstance(v, str)}}
        arrays = {k: v for k, v in fields.items() if not isinstance(v, str)}
        if self.render and self.want_frame:
            try:
                arrays["__frame__"] = self.np.asarray(self.env.render(), dtype=self.np.uint8)
            except Exception as e:  # noqa: BLE001  (headless rendering can fail in many ways)
                header["frame_error"] = f"{type(e).__name__}: {e}"
        return header, arrays

    def step(self, action):
        from adapters import env_action, success

        a = env_action(self.name, action)
        if not self.env.action_space.contains(a if not isinstance(a, int) else self.np.int64(a)):
            raise ValueError(f"action {a!r} is outside the action space {self.env.action_space}")
        self.raw, r, term, trunc, info = self.env.step(a)
        return self.obs(r, term, trunc, success(self.name, float(r), bool(term), info))

    def expert(self):
        from adapters import action_field

        a = self.expert_policy.act(self.raw)
        return {action_field(self.name): self.np.asarray(a, dtype=self.np.float32 if self.name in (
            "pendulum", "metaworld") else self.np.int64)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--render", action="store_true")
    a = p.parse_args()
    die_with_parent()
    out, inp = sys.stdout.buffer, sys.stdin.buffer
    sys.stdout = sys.stderr  # nothing but frames on stdout
    try:
        env = Mock() if a.env == "mock" else Simulator(a.env, a.seed, a.render)
    except ImportError as e:
        write_frame(out, {"type": "error", "kind": "setup",
                          "message": f"missing package ({e}): run `bash tools/record/setup.sh`"})
        return 1
    except Exception as e:  # noqa: BLE001
        write_frame(out, {"type": "error", "kind": "setup", "message": f"{type(e).__name__}: {e}"})
        return 1
    write_frame(out, {"type": "hello", "protocol": PROTOCOL, "env": a.env, "env_id": env.env_id,
                      "fields": env.fields(), "expert": True})
    while True:
        try:
            header, arrays = read_frame(inp)
        except Exception as e:  # noqa: BLE001
            write_frame(out, {"type": "error", "message": f"bad request: {e}"})
            return 1
        if header is None or header.get("type") == "close":
            return 0
        try:
            kind = header.get("type")
            if kind == "reset":
                h, arr = env.reset(int(header["seed"]), bool(header.get("render", False)))
                write_frame(out, dict(h, type="observation"), arr)
            elif kind == "step":
                h, arr = env.step(arrays)
                write_frame(out, dict(h, type="observation"), arr)
            elif kind == "expert":
                write_frame(out, {"type": "action"}, env.expert())
            else:
                write_frame(out, {"type": "error", "message": f"unknown request type {kind!r}"})
        except Exception as e:  # noqa: BLE001  (reported to the Rust side, which ends the episode)
            write_frame(out, {"type": "error", "message": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    sys.exit(main())
