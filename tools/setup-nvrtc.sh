#!/usr/bin/env bash
# Install NVRTC (the CUDA runtime compiler library, no GPU needed) from the `nvidia-cuda-nvrtc-cu12` wheel into
# .cache/venv-nvrtc, so the CUDA kernels can be compiled to PTX on CPU-only machines. Prints the lib directory
# to put on LD_LIBRARY_PATH.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.cache/venv-nvrtc"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check nvidia-cuda-nvrtc-cu12==12.8.93
lib="$("$venv/bin/python" -c 'import nvidia.cuda_nvrtc, os; print(os.path.join(list(nvidia.cuda_nvrtc.__path__)[0], "lib"))')"
# cudarc looks for libnvrtc.so or libnvrtc.so.12 (the wheel ships the versioned name).
[ -e "$lib/libnvrtc.so" ] || ln -s "$(ls "$lib"/libnvrtc.so.12* | head -1)" "$lib/libnvrtc.so" 2>/dev/null || true
echo "$lib"
