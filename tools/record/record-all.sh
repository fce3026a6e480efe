#!/usr/bin/env bash
# One command from a fresh clone: set up the recorder and record a data set for every environment.
#   bash tools/record/record-all.sh [EPISODES] [OUT] [WORKERS]   (defaults: 20 episodes into .cache/episodes, 2 workers)
# Then: cargo run --release -p gato-cli -- episodes .cache/episodes/*.safetensors
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$(bash "$root/tools/record/setup.sh")"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
"$venv/bin/python" "$root/tools/record/record.py" --env all --episodes "${1:-20}" --out "${2:-$root/.cache/episodes}" \
    --workers "${3:-2}"
