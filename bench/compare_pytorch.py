#!/usr/bin/env python3
"""gato-rs against PyTorch eager on the same machine, same thread count, same weights, same input.

Builds Gato's decoder from PyTorch's built-in layers (nn.TransformerEncoderLayer, pre-LayerNorm, exact GELU, causal
mask), loads the weights of a gato checkpoint, and

1. checks the logits agree with `gato forward --dump-logits` on a real episode (max |Δ| / max |logit| < 1e-4);
2. times both forwards on that input — logits only at the positions whose next token is a target, as
   `gato forward` computes them — and prints the ratio.

Optional dependency: runs only where `torch` is installed (CI does not install it). Usage, from the repository root:

    cargo build --release -p gato-cli
    python3 bench/compare_pytorch.py --threads 2            # small, data/episodes/metaworld.safetensors

The episode must be image-free (the ResNet patch embedding is not rebuilt here); its first window of whole
timesteps is used (1012 tokens for the bundled MetaWorld episode).
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

try:
    import torch
    from torch import nn
except ImportError:
    print("SKIPPED: torch is not installed (pip install torch); nothing compared", file=sys.stderr)
    sys.exit(0)

TORCH_DTYPES = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I32": torch.int32,
    "U32": torch.int64,  # widened below
    "U8": torch.uint8,
}


def read_safetensors(path):
    """name -> tensor, parsed from the documented format (8-byte header length, JSON header, raw data)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = bytearray(blob[base + start : base + end])
        dtype = info["dtype"]
        if dtype == "U32":
            t = torch.frombuffer(raw, dtype=torch.int32).to(torch.int64) & 0xFFFFFFFF
        else:
            t = torch.frombuffer(raw, dtype=TORCH_DTYPES[dtype])
        out[name] = t.reshape(info["shape"]).clone()
    return out


class TorchGato(nn.Module):
    """Gato's decoder from PyTorch's built-in layers, weights from a gato checkpoint (stored [in, out])."""

    def __init__(self, config, weights):
        super().__init__()
        w, h = config["layer_width"], config["num_attention_heads"]
        if config["num_attention_heads"] * config["key_value_size"] != w:
            raise SystemExit("nn.MultiheadAttention needs heads * key_value_size == layer_width")
        if config["activation"] != "gelu" or not config["tie_embeddings"]:
            raise SystemExit("this script builds the GELU, tied-embedding configs (tiny, small, ...)")
        eps = config["layer_norm_eps"]
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model=w,
                nhead=h,
                dim_feedforward=config["feedforward_hidden_size"],
                dropout=0.0,
                activation="gelu",
                layer_norm_eps=eps,
                batch_first=True,
                norm_first=True,
            )
            for _ in range(config["num_transformer_blocks"])
        )
        self.final_ln = nn.LayerNorm(w, eps=eps)
        f32 = {k: v.float() for k, v in weights.items()}
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                p = f"blocks.{i}"
                attn = layer.self_attn
                attn.in_proj_weight.copy_(
                    torch.cat([f32[f"{p}.attn.{x}.weight"].T for x in "qkv"], dim=0)
                )
                attn.in_proj_bias.copy_(torch.cat([f32[f"{p}.attn.{x}.bias"] for x in "qkv"]))
                attn.out_proj.weight.copy_(f32[f"{p}.attn.o.weight"].T)
                attn.out_proj.bias.copy_(f32[f"{p}.attn.o.bias"])
                layer.linear1.weight.copy_(f32[f"{p}.ff.in.weight"].T)
                layer.linear1.bias.copy_(f32[f"{p}.ff.in.bias"])
                layer.linear2.weight.copy_(f32[f"{p}.ff.out.weight"].T)
                layer.linear2.bias.copy_(f32[f"{p}.ff.out.bias"])
                layer.norm1.weight.copy_(f32[f"{p}.ln1.weight"])
                layer.norm1.bias.copy_(f32[f"{p}.ln1.bias"])
                layer.norm2.weight.copy_(f32[f"{p}.ln2.weight"])
                layer.norm2.bias.copy_(f32[f"{p}.ln2.bias"])
            self.final_ln.weight.copy_(f32["final_ln.weight"])
            self.final_ln.bias.copy_(f32["final_ln.bias"])
        self.tokens = f32["embed.tokens"]  # [vocab, W], tied output head
        self.local = f32["embed.local_position"]  # [positions, W]

    def embed(self, ids, local):
        # Image-free input: token embedding plus the local position of observation tokens (§2.2, App. C.3).
        x = self.tokens[ids]
        has = local >= 0
        x[has] += self.local[local[has]]
        return x

    def forward(self, ids, local, rows=None):
        t = ids.shape[0]
        x = self.embed(ids, local).unsqueeze(0)
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        for layer in self.layers:
            x = layer(x, src_mask=mask, is_causal=True)
        h = self.final_ln(x[0])
        if rows is not None:
            h = h[rows]
        return h @ self.tokens.T


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gato", default="target/release/gato", help="the gato binary")
    ap.add_argument("--config", default="small")
    ap.add_argument("--checkpoint", help="existing checkpoint directory (default: gato init into a temp dir)")
    ap.add_argument("--episode", default="data/episodes/metaworld.safetensors")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions of each forward (best is kept)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    tmp = tempfile.mkdtemp(prefix="gato-vs-torch-")
    ck = args.checkpoint or os.path.join(tmp, "ck")
    if not args.checkpoint:
        run([args.gato, "init", "--config", args.config, "--out", ck])
    dump = os.path.join(tmp, "dump.safetensors")
    base = [args.gato, "--threads", str(args.threads), "forward", "--checkpoint", ck, "--episode", args.episode]
    run(base + ["--dump-logits", dump])
    with open(os.path.join(ck, "config.json")) as f:
        config = json.load(f)
    model = TorchGato(config, read_safetensors(os.path.join(ck, "model.safetensors"))).eval()
    d = read_safetensors(dump)
    if d["image_mask"].any():
        raise SystemExit("the episode has image tokens; pick an image-free episode")
    ids, local = d["token_ids"], d["local_positions"].to(torch.int64)

    # 1. Agreement of the full logits.
    want = d["logits"]
    got = model(ids, local)
    err = ((got - want).abs().max() / want.abs().max()).item()
    print(f"logits [{want.shape[0]} x {want.shape[1]}]: max |torch - gato| / max |gato| = {err:.2e} (bound 1e-4)")

    # 2. Timing: logits only at positions whose next token is a target (text or action), like `gato forward`.
    loss = d["loss_mask"].bool()
    rows = torch.nonzero(loss[1:]).flatten()
    model(ids, local, rows)  # warm-up
    best = float("inf")
    for _ in range(args.reps):
        t = time.perf_counter()
        model(ids, local, rows)
        best = min(best, time.perf_counter() - t)
    out = json.loads(run(base + ["--reps", str(args.reps), "--json"]))
    gato_s = out["seconds"]["forward"]
    n = ids.shape[0]
    print(f"forward, {n} tokens, {rows.numel()} target positions, {args.threads} threads:")
    print(f"  PyTorch {torch.__version__} eager: {best * 1e3:.1f} ms")
    print(f"  gato-rs (cpu):               {gato_s * 1e3:.1f} ms")
    print(f"  gato-rs is {best / gato_s:.2f}x faster than PyTorch eager")
    if err >= 1e-4:
        raise SystemExit("logits disagree")


if __name__ == "__main__":
    main()
