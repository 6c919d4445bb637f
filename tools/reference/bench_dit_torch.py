#!/usr/bin/env python3
"""Full-size DiT-XL/2 (256 and 512 px) with random weights: diffusers' throughput and the
reference activations revelio's DiT is compared with, on a CUDA GPU.

Step 1 (this script): for each config, builds diffusers' DiTTransformer2DModel with DiT-XL/2's
shape (28 blocks, 16 heads of 72, patch 2; sample_size 32 or 64), random weights (seeded,
perturbed off their init, rounded through bf16 so that a bf16 load on our side sees exactly the
values the f32 reference used), and writes under OUT_DIR/<config>/:

    transformer/config.json, transformer/diffusion_pytorch_model.safetensors   (bf16 weights)
    inputs.safetensors      hidden_states f32 [B, 4, S, S], timestep f32 [B], class_labels i64 [B]
                            (labels include the null class 1000)
    reference.safetensors   diffusers in f32 (TF32 off): `sample` [B, 8, S, S] and `block.N`
                            [B, 1152, S/2, S/2] for N in --tap-blocks (tokens as 2D maps)

and times diffusers' forward in bf16 with SDPA attention (eager, and with torch.compile when
--compile), median of --iters CUDA-event-timed runs: images/s into OUT_DIR/bench_dit.json
(or --json), with diffusers-bf16's own error against the f32 reference as a baseline.

Step 2 (revelio, on the same machine), per config C:

    revelio forward --model OUT_DIR/C/transformer --inputs OUT_DIR/C/inputs.safetensors \
        --out OUT_DIR/C/ours.safetensors --dtype bf16 --taps block.0,block.13,block.27
    revelio bench --model OUT_DIR/C/transformer --dtype bf16 --batch-size B --resolution 256|512

Step 3: `bench_dit_torch.py --out-dir OUT_DIR --compare-only` adds the relative L2 and max
|diff| of every tensor of ours.safetensors against reference.safetensors to the JSON (and to
docs/parity.md by hand).

    /work/refvenv/bin/python tools/reference/bench_dit_torch.py --out-dir /tmp/dit-bench --batch 8
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file

from benchlib import compare_and_write, errors, load_results, perturb, round_bf16, timing

# DiT-XL/2 (facebookresearch/DiT models.py DiT_XL_2; the Hub's facebook/DiT-XL-2-* configs).
XL2 = dict(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8, num_layers=28,
           patch_size=2, num_embeds_ada_norm=1000, attention_bias=True, activation_fn="gelu-approximate",
           norm_type="ada_norm_zero", norm_elementwise_affine=False)
CONFIGS = {"xl2-256": dict(XL2, sample_size=32), "xl2-512": dict(XL2, sample_size=64)}




def build(cfg, seed):
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(seed)
    model = DiTTransformer2DModel(**cfg).eval()
    perturb(model, seed)  # every parameter, adaLN gates included, leaves its init value
    return round_bf16(model)


def to_map(tokens, side):
    b, t, d = tokens.shape
    return tokens.reshape(b, side, side, d).permute(0, 3, 1, 2).contiguous()


def reference(model, x, t, y, tap_blocks, side):
    rec = {}
    hooks = [model.transformer_blocks[n].register_forward_hook(lambda m, i, o, n=n: rec.__setitem__(f"block.{n}", o))
             for n in tap_blocks]
    with torch.no_grad():
        sample = model(x, timestep=t, class_labels=y).sample
    for h in hooks:
        h.remove()
    out = {k: to_map(v, side).float().cpu() for k, v in rec.items()}
    out["sample"] = sample.float().cpu()
    return out






def prepare_and_time(name, cfg, args, seed):
    folder = os.path.join(args.out_dir, name)
    tdir = os.path.join(folder, "transformer")
    os.makedirs(tdir, exist_ok=True)
    model = build(cfg, seed)
    model.save_config(tdir)
    weights = os.path.join(tdir, "diffusion_pytorch_model.safetensors")
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}, weights, metadata={"format": "pt"})

    side = cfg["sample_size"]
    g = torch.Generator().manual_seed(1000 + seed)
    b = args.batch
    x = torch.randn(b, 4, side, side, generator=g)
    t = torch.linspace(0, 999, b).round()
    y = torch.randint(0, 1000, (b,), generator=g)
    y[::4] = 1000  # the null class, as the revelio reference feeds it
    save_file({"hidden_states": x, "timestep": t, "class_labels": y}, os.path.join(folder, "inputs.safetensors"))

    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = model.to(dev)
    xd, td, yd = x.to(dev), t.to(dev), y.to(dev)
    ref = reference(model, xd, td, yd, args.tap_blocks, side // cfg["patch_size"])
    save_file(ref, os.path.join(folder, "reference.safetensors"))

    model = model.to(torch.bfloat16)
    xb = xd.to(torch.bfloat16)
    bf16 = reference(model, xb, td, yd, args.tap_blocks, side // cfg["patch_size"])

    def fwd(m):
        with torch.no_grad():
            return m(xb, timestep=td, class_labels=yd).sample

    row = {"config": name, "batch": b, "sample_size": side, "tokens": (side // 2) ** 2,
           "diffusers_bf16_vs_f32": errors(bf16, ref)}
    row["diffusers_bf16_eager"] = timing(lambda: fwd(model), args.iters, torch.device("cuda"), b)
    if args.compile:
        compiled = torch.compile(model)
        row["diffusers_bf16_compile"] = timing(lambda: fwd(compiled), args.iters, torch.device("cuda"), b)
    print(json.dumps({k: v for k, v in row.items() if k != "diffusers_bf16_vs_f32"}), file=sys.stderr)
    del model
    torch.cuda.empty_cache()
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", required=True, help="where the model folders, inputs and references go")
    ap.add_argument("--json", help="results file (default OUT_DIR/bench_dit.json)")
    ap.add_argument("--configs", default="xl2-256,xl2-512")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(model)")
    ap.add_argument("--tap-blocks", default="0,13,27", help="blocks whose outputs the reference keeps")
    ap.add_argument("--compare-only", action="store_true",
                    help="only compare OUT_DIR/<config>/ours.safetensors with reference.safetensors")
    args = ap.parse_args()
    args.tap_blocks = [int(n) for n in args.tap_blocks.split(",") if n]
    json_path = args.json or os.path.join(args.out_dir, "bench_dit.json")
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        sys.exit(f"unknown configs {unknown}; known: {list(CONFIGS)}")

    results = load_results(json_path)
    if not args.compare_only:
        import diffusers

        if not torch.cuda.is_available():
            sys.exit("needs a CUDA GPU (the timings and the reference are taken on it)")
        results["env"] = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                          "diffusers": diffusers.__version__, "attention": "SDPA (AttnProcessor2_0)"}
        for seed, name in enumerate(names):
            results[name] = prepare_and_time(name, CONFIGS[name], args, seed + 1)
    compare_and_write(results, names, args.out_dir, json_path)

if __name__ == "__main__":
    main()
