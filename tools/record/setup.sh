#!/usr/bin/env bash
# Create the recorder's virtual environment (.cache/venv-record) from the pinned requirements.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.cache/venv-record"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tools/record/requirements.txt"
echo "$venv"
