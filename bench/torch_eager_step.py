#!/usr/bin/env python3
"""The reference users would otherwise run: one Gato training step in PyTorch eager, timed as
`examples/device_check.rs` times gato-rs's (gato-cuda/scripts/device-check.sh runs both and prints them together).

The same shapes and work: a batch of 8 sequences of 1024 synthetic token ids, every position a target; the token
table (33025 × width, tied with the output head), `blocks` pre-LayerNorm decoder blocks (Q, K, V, O projections
with biases, causal attention scaled by 1/sqrt(kv), a GELU feed-forward), a final LayerNorm, cross-entropy, the
backward pass, clip_grad_norm_ and AdamW (foreach). Products in f32 (TF32 off, PyTorch's default) and under bf16
autocast (f32 master weights, as gato's --precision bf16). Attention as eager code computes it: `manual` (the
scores materialised, softmax, then the values) and `sdpa` (F.scaled_dot_product_attention, which picks a fused
kernel). FLOPs are counted as device_check counts gato's: 3 × the forward's matrix products and attention.

    python3 bench/torch_eager_step.py --device cuda                 # small and baseline, as device-check runs it
    python3 bench/torch_eager_step.py --device cpu --configs tiny --batch 2 --tokens 64 --reps 1   # a quick check
"""

import argparse
import math
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("SKIPPED: torch is not installed; nothing timed", file=sys.stderr)
    sys.exit(0)

VOCAB = 33025
# blocks, heads, width, feed-forward, key/value size: gato-core's presets (GatoConfig::tiny/small/baseline).
PRESETS = {
    "tiny": (2, 4, 64, 256, 16),
    "small": (8, 24, 768, 3072, 32),
    "baseline": (12, 12, 1536, 6144, 128),
}


def params(name, device):
    blocks, heads, w, ff, kv = PRESETS[name]
    a = heads * kv
    g = torch.Generator().manual_seed(0)
    t = lambda *s: (torch.randn(*s, generator=g) * 0.02).to(device).requires_grad_(True)
    z = lambda *s: torch.zeros(*s, device=device, requires_grad=True)
    o = lambda *s: torch.ones(*s, device=device, requires_grad=True)
    p = {"tokens": t(VOCAB, w), "final_ln.w": o(w), "final_ln.b": z(w)}
    for i in range(blocks):
        for n, (i_, o_) in {"q": (w, a), "k": (w, a), "v": (w, a), "o": (a, w), "ff_in": (w, ff), "ff_out": (ff, w)}.items():
            p[f"{i}.{n}.w"], p[f"{i}.{n}.b"] = t(i_, o_), z(o_)
        for n in ("ln1", "ln2"):
            p[f"{i}.{n}.w"], p[f"{i}.{n}.b"] = o(w), z(w)
    return p


def loss(p, ids, name, attention):
    blocks, heads, w, _, kv = PRESETS[name]
    b, t = ids.shape
    x = p["tokens"][ids]
    mask = torch.full((t, t), float("-inf"), device=ids.device).triu(1)
    for i in range(blocks):
        ln = lambda y, n: F.layer_norm(y, (w,), p[f"{i}.{n}.w"], p[f"{i}.{n}.b"], 1e-5)
        lin = lambda y, n: y @ p[f"{i}.{n}.w"] + p[f"{i}.{n}.b"]
        h = ln(x, "ln1")
        q, k, v = (lin(h, n).view(b, t, heads, kv).transpose(1, 2) for n in "qkv")
        if attention == "sdpa":
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = ((q @ k.transpose(-1, -2)) / math.sqrt(kv) + mask).softmax(-1) @ v
        x = x + lin(att.transpose(1, 2).reshape(b, t, heads * kv), "o")
        x = x + lin(F.gelu(lin(ln(x, "ln2"), "ff_in")), "ff_out")
    h = F.layer_norm(x, (w,), p["final_ln.w"], p["final_ln.b"], 1e-5)
    logits = h[:, :-1] @ p["tokens"].T
    return F.cross_entropy(logits.reshape(-1, VOCAB).float(), ids[:, 1:].reshape(-1))


def flops(name, batch, tokens):
    blocks, heads, w, ff, kv = PRESETS[name]
    a = heads * kv
    dense = 2 * tokens * blocks * (3 * w * a + a * w + 2 * w * ff)
    attention = 2 * 2 * blocks * tokens * tokens * a / 2
    head = 2 * tokens * w * VOCAB
    return 3 * batch * (dense + attention + head)


def step_time(name, device, batch, tokens, bf16, attention, reps):
    p = params(name, device)
    ps = list(p.values())
    opt = torch.optim.AdamW([{"params": [x for x in ps if x.dim() >= 2], "weight_decay": 0.1},
                             {"params": [x for x in ps if x.dim() < 2], "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8, foreach=True)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB - 1, (batch, tokens), generator=g).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    for rep in range(reps + 1):
        sync()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            l = loss(p, ids, name, attention)
        l.backward()
        torch.nn.utils.clip_grad_norm_(ps, 1.0)
        opt.step()
        sync()
        if rep > 0:
            times.append(time.perf_counter() - start)
    del p, ps, opt
    if device == "cuda":
        torch.cuda.empty_cache()
    return min(times), l.item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--configs", nargs="+", default=["small", "baseline"], choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak the MFU is against")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("SKIPPED: torch sees no CUDA device", file=sys.stderr)
        return
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"PyTorch {torch.__version__} eager on {name}, batch {args.batch} x {args.tokens} tokens, best of {args.reps}")
    for config in args.configs:
        for bf16 in (False, True):
            for attention in ("manual", "sdpa"):
                try:
                    s, l = step_time(config, args.device, args.batch, args.tokens, bf16, attention, args.reps)
                except torch.OutOfMemoryError:
                    print(f"torch {config:<9} train step {'bf16' if bf16 else ' f32'} {attention:<6}: out of memory")
                    continue
                f = flops(config, args.batch, args.tokens)
                print(f"torch {config:<9} train step {args.batch}x{args.tokens} {'bf16' if bf16 else ' f32'} "
                      f"{attention:<6}: {s * 1e3:.1f} ms, {args.batch * args.tokens / s:.0f} tokens/s, "
                      f"{f / s / 1e12:.1f} TFLOP/s = {100 * f / s / 1e12 / args.peak_tflops:.1f}% MFU (loss {l:.3f})")


if __name__ == "__main__":
    main()
