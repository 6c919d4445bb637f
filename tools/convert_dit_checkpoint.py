#!/usr/bin/env python3
"""Converts an original facebookresearch/DiT checkpoint (.pt) to safetensors for revelio.

    python tools/convert_dit_checkpoint.py DiT-XL-2-256x256.pt OUT_DIR [--diffusers] [--dtype f32|f16|bf16]

writes OUT_DIR/DiT-XL-2-256x256.safetensors under the checkpoint's own key names
(`x_embedder.proj.weight`, `t_embedder.mlp.0.weight`, `y_embedder.embedding_table.weight`,
`blocks.N.attn.qkv.weight`, `blocks.N.adaLN_modulation.1.weight`, `final_layer.linear.weight`,
`pos_embed`, ...). `revelio` loads that folder directly (`DiT::load`): the config comes from the
tensor shapes (depth, width, patch size, channels, classes, and the latent size from `pos_embed`),
the head count from the DiT family table (S: 6, B: 12, L and XL: 16), or from a diffusers-style
`config.json` put beside the file.

With `--diffusers` it also writes OUT_DIR/transformer/{config.json,diffusion_pytorch_model.safetensors}
in diffusers' DiTTransformer2DModel layout (what `facebook/DiT-XL-2-256` ships): the shared timestep
and label embedders are copied into every block's `norm1.emb`, qkv is split into to_q/to_k/to_v, and
the fixed `pos_embed` buffer is dropped (diffusers recomputes it).

Needs torch and safetensors (revelio does not). The .pt is read with `weights_only=True`; a training
checkpoint holding {"model", "ema", ...} gives its "ema" weights (what the DiT authors release).
"""

import argparse
import json
import math
import os
import re
import sys

# DiT widths and their head counts (facebookresearch/DiT models.py: DiT_S/B/L/XL_*).
HEADS_BY_WIDTH = {384: 6, 768: 12, 1024: 16, 1152: 16}

# Per-block renames, original -> diffusers (qkv is split separately).
BLOCK_RENAMES = [
    ("attn.proj", "attn1.to_out.0"),
    ("mlp.fc1", "ff.net.0.proj"),
    ("mlp.fc2", "ff.net.2"),
    ("adaLN_modulation.1", "norm1.linear"),
]
# Shared embedders: original -> diffusers (under every block's norm1.emb).
EMBEDDER_RENAMES = [
    ("t_embedder.mlp.0", "timestep_embedder.linear_1"),
    ("t_embedder.mlp.2", "timestep_embedder.linear_2"),
    ("y_embedder.embedding_table", "class_embedder.embedding_table"),
]
TOP_RENAMES = [
    ("x_embedder.proj", "pos_embed.proj"),
    ("final_layer.adaLN_modulation.1", "proj_out_1"),
    ("final_layer.linear", "proj_out_2"),
]


def depth_of(sd, prefix):
    ids = {int(m.group(1)) for k in sd for m in [re.match(rf"{re.escape(prefix)}\.(\d+)\.", k)] if m}
    if ids != set(range(len(ids))):
        raise ValueError(f"block indices under `{prefix}` are not 0..n-1: {sorted(ids)}")
    return len(ids)


def original_to_diffusers(sd):
    """Original DiT state dict -> diffusers DiTTransformer2DModel state dict (tensors cloned)."""
    out = {}
    used = set()

    def take(key):
        used.add(key)
        return sd[key]

    for src, dst in TOP_RENAMES:
        for p in ("weight", "bias"):
            out[f"{dst}.{p}"] = take(f"{src}.{p}").clone()
    depth = depth_of(sd, "blocks")
    for n in range(depth):
        b, d = f"blocks.{n}", f"transformer_blocks.{n}"
        for p in ("weight", "bias"):
            q, k, v = take(f"{b}.attn.qkv.{p}").chunk(3, dim=0)
            out[f"{d}.attn1.to_q.{p}"] = q.clone()
            out[f"{d}.attn1.to_k.{p}"] = k.clone()
            out[f"{d}.attn1.to_v.{p}"] = v.clone()
            for src, dst in BLOCK_RENAMES:
                out[f"{d}.{dst}.{p}"] = take(f"{b}.{src}.{p}").clone()
        for src, dst in EMBEDDER_RENAMES:
            for p in ("weight", "bias"):
                if f"{src}.{p}" in sd:
                    out[f"{d}.norm1.emb.{dst}.{p}"] = take(f"{src}.{p}").clone()
    extra = sorted(set(sd) - used - {"pos_embed"})
    if extra:
        raise ValueError(f"tensors with no place in DiT: {extra[:10]}")
    return out


def diffusers_to_original(sd, pos_embed=None):
    """diffusers DiTTransformer2DModel state dict -> original names. The original shares one
    timestep and one label embedder across blocks, so every block's norm1.emb must equal block 0's."""
    import torch

    out = {}
    for src, dst in TOP_RENAMES:
        for p in ("weight", "bias"):
            out[f"{src}.{p}"] = sd[f"{dst}.{p}"].clone()
    depth = depth_of(sd, "transformer_blocks")
    for n in range(depth):
        b, d = f"blocks.{n}", f"transformer_blocks.{n}"
        for p in ("weight", "bias"):
            out[f"{b}.attn.qkv.{p}"] = torch.cat([sd[f"{d}.attn1.to_{x}.{p}"] for x in "qkv"], dim=0)
            for src, dst in BLOCK_RENAMES:
                out[f"{b}.{src}.{p}"] = sd[f"{d}.{dst}.{p}"].clone()
        for src, dst in EMBEDDER_RENAMES:
            for p in ("weight", "bias"):
                key = f"{d}.norm1.emb.{dst}.{p}"
                if key not in sd:
                    continue
                if n == 0:
                    out[f"{src}.{p}"] = sd[key].clone()
                elif not torch.equal(sd[key], out[f"{src}.{p}"]):
                    raise ValueError(f"{key} differs from block 0's: the original layout shares the embedders")
    if pos_embed is not None:
        out["pos_embed"] = pos_embed.clone()
    return out


def infer_config(sd, num_heads=None):
    """A diffusers DiTTransformer2DModel config from an original state dict's shapes."""
    w = sd["x_embedder.proj.weight"]
    hidden, in_channels, p = w.shape[0], w.shape[1], w.shape[2]
    heads = num_heads or HEADS_BY_WIDTH.get(hidden)
    if heads is None:
        raise ValueError(f"width {hidden} is not a DiT-S/B/L/XL width: pass --num-heads")
    out_channels = sd["final_layer.linear.weight"].shape[0] // (p * p)
    classes = sd["y_embedder.embedding_table.weight"].shape[0] - 1
    tokens = sd["pos_embed"].shape[1]
    grid = math.isqrt(tokens)
    if grid * grid != tokens:
        raise ValueError(f"pos_embed has {tokens} tokens, not a square grid")
    return {
        "_class_name": "DiTTransformer2DModel",
        "activation_fn": "gelu-approximate",
        "attention_bias": True,
        "attention_head_dim": hidden // heads,
        "dropout": 0.0,
        "in_channels": in_channels,
        "norm_elementwise_affine": False,
        "norm_eps": 1e-5,
        "norm_num_groups": 32,
        "norm_type": "ada_norm_zero",
        "num_attention_heads": heads,
        "num_embeds_ada_norm": classes,
        "num_layers": depth_of(sd, "blocks"),
        "out_channels": out_channels,
        "patch_size": p,
        "sample_size": grid * p,
        "upcast_attention": False,
    }


def load_pt(path):
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("ema", "model", "state_dict"):
        if isinstance(ckpt, dict) and key in ckpt and isinstance(ckpt[key], dict):
            print(f"using the checkpoint's `{key}` weights", file=sys.stderr)
            ckpt = ckpt[key]
            break
    return {k.removeprefix("module."): v for k, v in ckpt.items()}


def main():
    import torch
    from safetensors.torch import save_file

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="the original .pt (e.g. DiT-XL-2-256x256.pt)")
    ap.add_argument("out_dir")
    ap.add_argument("--diffusers", action="store_true", help="also write OUT_DIR/transformer/ in diffusers names")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"])
    ap.add_argument("--num-heads", type=int, help="head count, for a width outside the DiT family")
    args = ap.parse_args()

    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    # The fixed position buffer stays f32 (revelio checks it against its own embedding).
    sd = {k: v.to(dtype) if v.is_floating_point() and k != "pos_embed" else v for k, v in load_pt(args.checkpoint).items()}
    config = infer_config(sd, args.num_heads)  # also checks the checkpoint is a DiT
    os.makedirs(args.out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(args.checkpoint))[0]
    path = os.path.join(args.out_dir, f"{stem}.safetensors")
    save_file({k: v.contiguous() for k, v in sd.items()}, path, metadata={"format": "pt"})
    print(f"wrote {path} ({len(sd)} tensors)", file=sys.stderr)
    if args.num_heads:
        with open(os.path.join(args.out_dir, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
    if args.diffusers:
        tdir = os.path.join(args.out_dir, "transformer")
        os.makedirs(tdir, exist_ok=True)
        save_file(original_to_diffusers(sd), os.path.join(tdir, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(tdir, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
        print(f"wrote {tdir}/ (diffusers DiTTransformer2DModel layout)", file=sys.stderr)


if __name__ == "__main__":
    main()
