"""Write and read gato-rs episode files (docs/episode-format.md): safetensors + JSON metadata.

Needs only numpy and safetensors. One file holds one or more episodes of one environment; each field is a tensor
with a leading time axis named `episode_{i}.{field}`; text is stored as UTF-8 bytes plus offsets.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

FORMAT = "gato-episodes"
VERSION = 1
DTYPES = {"continuous": np.float32, "discrete": np.int64, "image": np.uint8}


@dataclass
class Field:
    """One observation or action field. `shape` is per timestep ([] for a scalar, [H, W, C] for an image)."""

    name: str
    role: str  # "observation" | "action"
    modality: str  # "text" | "image" | "discrete" | "continuous"
    shape: list[int] = field(default_factory=list)
    num_values: int | None = None  # discrete: legal values [0, n)
    mu_law: bool | None = None  # continuous: companding before binning
    bounds: list[float] | None = None  # continuous: [low, high] of the space, if bounded

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "role": self.role, "modality": self.modality, "shape": list(self.shape)}
        d["dtype"] = "text" if self.modality == "text" else np.dtype(DTYPES[self.modality]).name
        if self.modality == "discrete":
            d["num_values"] = int(self.num_values)
        if self.modality == "continuous":
            d["mu_law"] = bool(self.mu_law if self.mu_law is not None else True)
            d["bounds"] = None if self.bounds is None else [float(self.bounds[0]), float(self.bounds[1])]
        return d


def write_episodes(path: str, env_id: str, fields: list[Field], episodes: list[dict[str, Any]], extra: dict | None = None) -> None:
    """`episodes`: each a dict with one entry per field name (a list or array over time; text: list of str) and
    `rewards` (T floats). Metadata records per-episode length and return."""
    tensors: dict[str, np.ndarray] = {}
    meta_eps = []
    for i, ep in enumerate(episodes):
        rewards = np.asarray(ep["rewards"], dtype=np.float32)
        t = int(rewards.shape[0])
        tensors[f"episode_{i}.rewards"] = rewards
        for f in fields:
            v = ep[f.name]
            if f.modality == "text":
                encoded = [s.encode("utf-8") for s in v]
                if len(encoded) != t:
                    raise ValueError(f"episode {i} field {f.name}: {len(encoded)} steps, rewards have {t}")
                offsets = np.zeros(t + 1, dtype=np.int64)
                offsets[1:] = np.cumsum([len(b) for b in encoded])
                tensors[f"episode_{i}.{f.name}.bytes"] = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
                tensors[f"episode_{i}.{f.name}.offsets"] = offsets
            else:
                a = np.ascontiguousarray(np.asarray(v, dtype=DTYPES[f.modality])).reshape([t] + list(f.shape))
                tensors[f"episode_{i}.{f.name}"] = a
        meta_eps.append({"length": t, "return": float(rewards.astype(np.float64).sum())})
    metadata = {
        "format": FORMAT,
        "version": str(VERSION),
        "env_id": env_id,
        "fields": json.dumps([f.describe() for f in fields]),
        "episodes": json.dumps(meta_eps),
    }
    for k, v in (extra or {}).items():
        metadata[k] = v if isinstance(v, str) else json.dumps(v)
    save_file(tensors, path, metadata=metadata)


def read_episodes(path: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Inverse of `write_episodes` (for tests and inspection)."""
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
    tensors = load_file(path)
    fields = json.loads(meta["fields"])
    out = []
    for i, _ in enumerate(json.loads(meta["episodes"])):
        ep: dict[str, Any] = {"rewards": tensors[f"episode_{i}.rewards"]}
        for f in fields:
            if f["modality"] == "text":
                b = tensors[f"episode_{i}.{f['name']}.bytes"].tobytes()
                o = tensors[f"episode_{i}.{f['name']}.offsets"]
                ep[f["name"]] = [b[o[k]:o[k + 1]].decode("utf-8") for k in range(len(o) - 1)]
            else:
                ep[f["name"]] = tensors[f"episode_{i}.{f['name']}"]
        out.append(ep)
    return meta, out
