#!/usr/bin/env bash
# Fetch a real 32000-piece SentencePiece model and the Python reference ids for the Rust tokenizer tests.
#
# The model is `tokenizer.model.v1` (Mistral 7B v1, Apache-2.0) shipped inside the PyPI package mistral-common;
# we download that wheel through pip (no dependencies installed) and extract the one file. Python's
# `sentencepiece` then encodes gato-tokenizers/tests/data/text_lines.jsonl into expected ids.
# Everything lands in .cache/sentencepiece/ (git-ignored). Set-up time only: nothing downloads at run time.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/.cache/sentencepiece"
venv="$root/.cache/venv-tools"
mkdir -p "$out"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/tools/requirements-sentencepiece.txt"

if [ ! -s "$out/tokenizer.model" ]; then
    tmp="$(mktemp -d)"
    "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps mistral-common==1.13.1 -d "$tmp"
    "$venv/bin/python" - "$tmp" "$out/tokenizer.model" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/mistral_common-*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as f:
    f.write(z.read("mistral_common/data/tokenizer.model.v1"))
PY
    rm -rf "$tmp"
fi

"$venv/bin/python" "$root/tools/sentencepiece_reference.py" "$out/tokenizer.model" \
    "$root/gato-tokenizers/tests/data/text_lines.jsonl" "$out/expected.jsonl"
echo "SentencePiece model and reference ids in $out"
