"""Write the round-trip fixture: every modality, with awkward values, through the Python writer.

    python tools/record/make_fixture.py data/fixtures

Writes all_modalities.safetensors and all_modalities.json (the expected values; floats as IEEE-754 bit patterns
so the Rust test can compare bit for bit). Deterministic: the same bytes every run.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gato_episodes import Field, write_episodes  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else "data/fixtures"
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(1234)
fields = [
    Field("text_observations", "observation", "text"),
    Field("image_observations", "observation", "image", [16, 32, 3]),
    Field("discrete_observations", "observation", "discrete", [2, 3], num_values=1024),
    Field("continuous_observations", "observation", "continuous", [5], mu_law=True),
    Field("discrete_actions", "action", "discrete", [], num_values=18),
    Field("continuous_actions", "action", "continuous", [2], mu_law=False, bounds=[-1.0, 1.0]),
]
texts = ["go to the red ball", "", "tabs\tand  spaces", "日本語 😀 émoji", "line\nbreak"]
special = np.array([0.0, -0.0, 1e-38, -3.4028235e38, 3.4028235e38, 1.4e-45, np.pi, -1.0 / 3.0], dtype=np.float32)
episodes = []
for e, t in enumerate([3, 5]):
    cont = rng.standard_normal((t, 5)).astype(np.float32) * 100
    cont.flat[: min(len(special), cont.size)] = special[: min(len(special), cont.size)]
    episodes.append({
        "text_observations": [texts[(e + k) % len(texts)] for k in range(t)],
        "image_observations": rng.integers(0, 256, (t, 16, 32, 3), dtype=np.uint8),
        "discrete_observations": rng.integers(0, 1024, (t, 2, 3), dtype=np.int64),
        "continuous_observations": cont,
        "discrete_actions": rng.integers(0, 18, (t,), dtype=np.int64),
        "continuous_actions": rng.uniform(-1, 1, (t, 2)).astype(np.float32),
        "rewards": rng.standard_normal(t).astype(np.float32),
    })
write_episodes(os.path.join(out, "all_modalities.safetensors"), "fixture/all-modalities-v0", fields, episodes,
               extra={"policy": "random fixture"})
expect = []
for ep in episodes:
    d = {}
    for k, v in ep.items():
        if k == "text_observations":
            d[k] = v
        elif v.dtype == np.float32:
            d[k] = {"shape": list(v.shape), "bits": v.view(np.uint32).reshape(-1).tolist()}
        else:
            d[k] = {"shape": list(v.shape), "values": v.reshape(-1).astype(np.int64).tolist()}
    expect.append(d)
with open(os.path.join(out, "all_modalities.json"), "w", encoding="utf-8") as f:
    json.dump({"env_id": "fixture/all-modalities-v0", "episodes": expect}, f, ensure_ascii=False)
print(f"wrote {out}/all_modalities.safetensors")
