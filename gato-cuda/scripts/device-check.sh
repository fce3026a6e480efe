#!/usr/bin/env bash
# GPU checks for gato-cuda, in one call on a machine with a GPU (finishes in a few minutes):
#   1. build in release (or, on a machine without Rust such as this workplace's device machines, unpack the
#      binaries gato-cuda/scripts/device-build.sh packed into .device-bin/); 2. the shared conformance suite
#      against CUDA (every op vs the f64 reference);
#   3. gato backends / check / bench with --backend cuda;
#   4. gato train on CUDA: 5 steps of tiny with --precision bf16 (the CLI path, bf16 products taken), and the same
#      over NCCL with world size 1 (where libnccl is installed);
#   5. end-to-end: CUDA vs CPU logits (tiny, small; f32 and bf16 weights), KV-cache decode == full forward;
#      training: CUDA vs CPU loss and every gradient of tiny (f32 < 1e-4, bf16 < 2e-2), a 10-step trajectory;
#   6. benchmark: forward tokens/s for small and baseline at 8 x 1024 (f32 and bf16 weights), MFU, per-token
#      decode latency; training steps at 8 x 1024 (f32 and bf16 products), tokens/s and MFU.
#   7. where PyTorch is installed: the same training step in PyTorch eager (bench/torch_eager_step.py).
# Prints a short table last. Usage: bash gato-cuda/scripts/device-check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export GATO_CONFORMANCE_CASES="${GATO_CONFORMANCE_CASES:-16}"
# CUDA libraries shipped as Python wheels (cuBLAS, NVRTC, NCCL) join the library path, for machines whose system
# path lacks them; the driver's libcuda comes from the system.
wheel_libs=$(python3 -c 'import glob, os, sys
dirs = {os.path.dirname(f) for p in sys.path for f in glob.glob(os.path.join(p, "nvidia", "**", "lib*.so*"), recursive=True)}
print(":".join(sorted(dirs)))' 2>/dev/null || true)
[ -n "$wheel_libs" ] && export LD_LIBRARY_PATH="$wheel_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# cudarc opens NCCL as libnccl.so (or .so.<CUDA major>), while NCCL's wheels and runtime packages ship only
# libnccl.so.2: give it the plain name.
nccl=$(IFS=:; for d in ${LD_LIBRARY_PATH:-}; do ls "$d"/libnccl.so.2 2>/dev/null; done | head -1 || true)
if [ -n "$nccl" ] && ! ls "$(dirname "$nccl")/libnccl.so" >/dev/null 2>&1; then
    mkdir -p /tmp/gato-libs && ln -sf "$nccl" /tmp/gato-libs/libnccl.so
    export LD_LIBRARY_PATH="/tmp/gato-libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# Build quietly, so the first line printed is the verdict on the CUDA backend.
if command -v cargo >/dev/null 2>&1; then
    if ! cargo build --release --locked -p gato-cli --bin gato --example device_check >/tmp/gato-device-build.log 2>&1; then
        echo "FAIL: build failed (log below)"; cat /tmp/gato-device-build.log; exit 1
    fi
    gato=./target/release/gato
    device_check=./target/release/examples/device_check
    conformance=(cargo test --release --locked -p gato-cuda --test conformance)
elif [ -f .device-bin/gato-device.tar.xz ]; then
    rm -rf /tmp/gato-bin && mkdir -p /tmp/gato-bin && tar -C /tmp/gato-bin -xJf .device-bin/gato-device.tar.xz
    gato=/tmp/gato-bin/gato
    device_check=/tmp/gato-bin/device_check
    conformance=(/tmp/gato-bin/conformance)
else
    echo "FAIL: no cargo here and no .device-bin/gato-device.tar.xz (run gato-cuda/scripts/device-build.sh on a machine"
    echo "with Rust and carry .device-bin)"
    exit 1
fi
if ! verdict=$("$gato" --backend cuda check --size 256 2>&1); then
    echo "FAIL: CUDA backend unavailable on this machine: $verdict"
    nvidia-smi || true
    exit 1
fi
echo "ok: CUDA backend available ($(head -1 <<<"$verdict"))"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv || true
echo "=== conformance suite on CUDA (forward and backward)"
"${conformance[@]}" 2>&1 | tee /tmp/gato-cuda-conformance.log | grep -E "^test |test result|SKIPPED|panicked"
if grep -q SKIPPED /tmp/gato-cuda-conformance.log; then echo "FAIL: CUDA conformance skipped on a GPU machine"; exit 1; fi
echo "=== gato CLI on CUDA"
"$gato" --backend cuda backends
"$gato" --backend cuda check
"$gato" --backend cuda bench --reps 2 --act-steps 3
echo "=== gato train on CUDA (tiny, 5 steps, bf16 products)"
rm -rf /tmp/gato-device-train
"$gato" --backend cuda train --config tiny --data data/episodes/babyai.safetensors --steps 5 --batch 2 \
    --seq 256 --precision bf16 --eval-every 5 --out /tmp/gato-device-train 2>&1 | tee /tmp/gato-device-train.log | grep -v "^\s*$" | tail -5
grep -q "products bf16" /tmp/gato-device-train.log || { echo "FAIL: gato train did not take bf16 products on CUDA"; exit 1; }
echo "=== gato train over NCCL, world size 1 (skipped where libnccl is not installed)"
rm -rf /tmp/gato-device-train-dp /tmp/gato-device-nccl.id
if "$gato" --backend cuda train --config tiny --data data/episodes/babyai.safetensors --steps 5 --batch 2 \
    --seq 256 --precision bf16 --eval-every 5 --world-size 1 --rendezvous /tmp/gato-device-nccl.id \
    --out /tmp/gato-device-train-dp >/tmp/gato-device-train-dp.log 2>&1; then
    tail -3 /tmp/gato-device-train-dp.log
else
    grep -q "NCCL backend unavailable" /tmp/gato-device-train-dp.log && echo "SKIPPED: $(grep -o "NCCL backend unavailable.*" /tmp/gato-device-train-dp.log | head -1)" \
        || { echo "FAIL: gato train --world-size 1"; cat /tmp/gato-device-train-dp.log; exit 1; }
fi
# PyTorch eager on the same training steps, where torch with CUDA is installed; its lines join the table below.
if python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "=== PyTorch eager, the same training steps"
    python3 bench/torch_eager_step.py --device cuda | tee /tmp/gato-torch-eager.log
else
    echo "SKIPPED PyTorch eager comparison: torch with CUDA is not installed here" | tee /tmp/gato-torch-eager.log
fi
echo "=== end-to-end checks and benchmark"
status=0
"$device_check" || status=$?
grep -E "^(torch|SKIPPED)" /tmp/gato-torch-eager.log || true
exit $status
