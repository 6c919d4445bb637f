#!/usr/bin/env python3
"""Full-size Stable Diffusion U-Nets (SD 1.5 at 512 px, SD 2.1 at 768 px) with random weights:
diffusers' throughput and the reference activations revelio's U-Net is compared with, on a CUDA
GPU.

Step 1 (this script): for each config, builds diffusers' UNet2DConditionModel with the shape of
the Hub's stable-diffusion-v1-5 (`sd15`, 64x64 latents) or stable-diffusion-2-1 (`sd21`, 96x96
latents, linear projections, upcast attention) unet/config.json (embedded below: nothing is
downloaded), random weights (seeded, perturbed off their init, rounded through bf16 so that a
bf16 load on our side sees exactly the values the f32 reference used), and writes under
OUT_DIR/<config>/:

    unet/config.json, unet/diffusion_pytorch_model.safetensors   (bf16 weights)
    inputs.safetensors      sample f32 [B, 4, S, S], timestep f32 [B] (25, 999, 500, 0, ...),
                            encoder_hidden_states f32 [B, 77, D]
    reference.safetensors   diffusers in f32 (TF32 off): `sample` [B, 4, S, S] and the taps
                            `down.N` (the hidden state down_blocks[N] passes on, after its
                            downsampler: the first element of its returned tuple), `mid`
                            (mid_block) and `up.N` (up_blocks[N], after its upsampler)

and times diffusers' forward in the run dtype (bf16 on a GPU) with SDPA attention
(AttnProcessor2_0), median of --iters CUDA-event-timed runs: the full forward with a hook
recording the --stop-after tap (what a PyTorch feature-extraction script runs), the same forward
ended right after that tap (the hook raises an exception caught outside the model: the closest a
PyTorch script gets to stopping early), and the full forward under torch.compile when --compile.
Images/s (and peak memory) go into OUT_DIR/bench_unet.json (or --json), with diffusers' own error
in the run dtype against the f32 reference, per tap, as a baseline.

Step 2 (revelio, on the same machine), per config C (R = 512 for sd15, 768 for sd21):

    revelio forward --model OUT_DIR/C/unet --inputs OUT_DIR/C/inputs.safetensors \
        --out OUT_DIR/C/ours.safetensors --dtype bf16 \
        --taps down.0,down.1,down.2,down.3,mid,up.0,up.1,up.2,up.3
    revelio bench --model OUT_DIR/C/unet --dtype bf16 --batch-size B --resolution R
    revelio bench --model OUT_DIR/C/unet --dtype bf16 --batch-size B --resolution R --taps up.1

Step 3: `bench_unet_torch.py --out-dir OUT_DIR --compare-only` adds the relative L2 and max
|diff| of every tensor of ours.safetensors against reference.safetensors to the JSON (and to
docs/parity.md by hand).

    /work/refvenv/bin/python tools/reference/bench_unet_torch.py --out-dir /tmp/unet-bench --batch 8

Smoke test without a GPU (configs `sd15-tiny`, `sd21-tiny`: the same layouts with 32/64 channels,
16x16 latents (2x2 at the mid block), cross_attention_dim 32; batch 2, f32, time.perf_counter
timings; then revelio forward with `--device cpu` and no --dtype, then --compare-only with
--tiny; errors ~1e-6):

    /work/refvenv/bin/python tools/reference/bench_unet_torch.py --device cpu --tiny \
        --out-dir /tmp/unet-bench-tiny
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file

from benchlib import compare_and_write, errors, load_results, perturb, round_bf16, timing

# The Hub's unet/config.json files (every key they hold; the rest are diffusers' defaults, which
# these checkpoints use: no class embedding, no dual or cross-only attention, resnet time
# embedding added ("default"), mid block UNetMidBlock2DCrossAttn).
DOWN = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
UP = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
# runwayml/stable-diffusion-v1-5 (and CompVis/stable-diffusion-v1-4): 8 heads at every level.
SD15 = dict(sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
            freq_shift=0, down_block_types=DOWN, up_block_types=UP, block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1, act_fn="silu", norm_num_groups=32,
            norm_eps=1e-5, cross_attention_dim=768, attention_head_dim=8)
# stabilityai/stable-diffusion-2-1 (768 px, v-prediction: only the scheduler differs from 2-1-base
# besides sample_size): `attention_head_dim` is read by diffusers as head counts (5, 10, 20, 20:
# heads of 64), OpenCLIP-H text states of width 1024, linear proj_in/proj_out, upcast attention.
SD21 = dict(SD15, sample_size=96, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
            use_linear_projection=True, upcast_attention=True, dual_cross_attention=False,
            only_cross_attention=False, num_class_embeds=None)
CONFIGS = {"sd15": SD15, "sd21": SD21}
# --tiny: the same layouts, small enough to run on a CPU in seconds.
TINY = dict(block_out_channels=(32, 64, 64, 64), norm_num_groups=16, cross_attention_dim=32, sample_size=16)
TINY_CONFIGS = {"sd15-tiny": dict(SD15, **TINY, attention_head_dim=2),
                "sd21-tiny": dict(SD21, **TINY, attention_head_dim=(1, 2, 4, 4))}

TOKENS = 77
TIMESTEPS = (25.0, 999.0, 500.0, 0.0, 250.0, 750.0, 100.0, 900.0)




def build(cfg, seed):
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor2_0

    torch.manual_seed(seed)
    model = UNet2DConditionModel(**cfg).eval()
    model.set_attn_processor(AttnProcessor2_0())
    # Matrices and kernels move by 0.02 (of the order of their init's spread at these widths, so
    # activations stay in range through the 22 resnets and 16 transformer blocks), norm weights
    # and biases by 0.1 (so a forgotten affine term or bias shows).
    perturb(model, seed, scale=0.02, vector_scale=0.1)
    return round_bf16(model)


def tap_names(cfg):
    return ([f"down.{n}" for n in range(len(cfg["down_block_types"]))] + ["mid"]
            + [f"up.{n}" for n in range(len(cfg["up_block_types"]))])


def tap_module(model, name):
    """The block a tap name (revelio's aliases down.N, mid, up.N) stands for."""
    if name == "mid":
        return model.mid_block
    kind, _, n = name.partition(".")
    blocks = {"down": model.down_blocks, "up": model.up_blocks}.get(kind)
    return blocks[int(n)]


def first(output):
    # Down blocks return (hidden_states, res_samples): the tap is the state passed on.
    return output[0] if isinstance(output, tuple) else output


class _Stop(Exception):
    """Raised by the hook on the last wanted block to end the forward pass there."""


def record(model, names, rec, stop=False):
    """Forward hooks storing each named block's output in `rec`; with `stop`, the last one then
    raises _Stop (the caller catches it)."""

    def hook(module, args, output, name, last):
        rec[name] = first(output)
        if last:
            raise _Stop

    return [tap_module(model, n).register_forward_hook(
        lambda m, i, o, n=n, last=stop and k == len(names) - 1: hook(m, i, o, n, last))
        for k, n in enumerate(names)]


def reference(model, x, t, c, names):
    rec = {}
    hooks = record(model, names, rec)
    with torch.no_grad():
        sample = model(x, t, encoder_hidden_states=c).sample
    for h in hooks:
        h.remove()
    out = {k: v.float().cpu().contiguous() for k, v in rec.items()}
    out["sample"] = sample.float().cpu().contiguous()
    return out








def revelio_commands(name, cfg, args):
    folder = os.path.join(args.out_dir, name)
    model = os.path.join(folder, "unet")
    where = "--device cpu" if args.device == "cpu" else "--dtype bf16"
    taps = ",".join(tap_names(cfg))
    bench = (f"revelio bench --model {model} {where} --batch-size {args.batch} "
             f"--resolution {8 * cfg['sample_size']}")
    return [f"revelio forward --model {model} --inputs {os.path.join(folder, 'inputs.safetensors')} "
            f"--out {os.path.join(folder, 'ours.safetensors')} {where} --taps {taps}",
            bench, f"{bench} --taps {args.stop_after}"]


def prepare_and_time(name, cfg, args, seed):
    folder = os.path.join(args.out_dir, name)
    udir = os.path.join(folder, "unet")
    os.makedirs(udir, exist_ok=True)
    model = build(cfg, seed)
    model.save_config(udir)
    weights = os.path.join(udir, "diffusion_pytorch_model.safetensors")
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}, weights,
              metadata={"format": "pt"})
    names = tap_names(cfg)

    side = cfg["sample_size"]
    g = torch.Generator().manual_seed(1000 + seed)
    b = args.batch
    x = torch.randn(b, cfg["in_channels"], side, side, generator=g)
    t = torch.tensor([TIMESTEPS[i % len(TIMESTEPS)] for i in range(b)])
    c = torch.randn(b, TOKENS, cfg["cross_attention_dim"], generator=g)
    save_file({"sample": x, "timestep": t, "encoder_hidden_states": c}, os.path.join(folder, "inputs.safetensors"))

    dev = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = model.to(dev)
    xd, td, cd = x.to(dev), t.to(dev), c.to(dev)
    ref = reference(model, xd, td, cd, names)
    save_file(ref, os.path.join(folder, "reference.safetensors"))

    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
    model = model.to(dtype)
    xr, cr = xd.to(dtype), cd.to(dtype)
    low = reference(model, xr, td, cr, names)
    d = args.dtype
    row = {"config": name, "batch": b, "sample_size": side, "resolution": 8 * side, "device": args.device,
           "dtype": d, "stop_after": args.stop_after, f"diffusers_{d}_vs_f32": errors(low, ref)}
    del ref, low

    def timed(m, stop):
        # The hooks stay on for the whole run (registering them per call would make a compiled
        # model recompile).
        rec = {}
        hooks = record(model, [args.stop_after], rec, stop=stop)

        def fwd():
            try:
                with torch.no_grad():
                    m(xr, td, encoder_hidden_states=cr)
            except _Stop:
                pass
            rec.clear()

        try:
            return timing(fwd, args.iters, dev, b)
        finally:
            for h in hooks:
                h.remove()

    row[f"diffusers_{d}_eager"] = timed(model, False)
    row[f"diffusers_{d}_eager_until_{args.stop_after}"] = timed(model, True)
    if args.compile:
        compiled = torch.compile(model)
        row[f"diffusers_{d}_compile"] = timed(compiled, False)
        del compiled
    print(json.dumps({k: v for k, v in row.items() if k != f"diffusers_{d}_vs_f32"}), file=sys.stderr)
    del model
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", required=True, help="where the model folders, inputs and references go")
    ap.add_argument("--json", help="results file (default OUT_DIR/bench_unet.json)")
    ap.add_argument("--configs", help="default sd15,sd21 (with --tiny: sd15-tiny,sd21-tiny)")
    ap.add_argument("--tiny", action="store_true", help="the tiny configs (a smoke test, e.g. on a CPU)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--dtype", choices=["bf16", "f16", "f32"],
                    help="dtype diffusers is timed (and its baseline error taken) in: default bf16 on "
                         "cuda, f32 on cpu (the reference is always f32)")
    ap.add_argument("--batch", type=int, help="default 8 (with --tiny: 2)")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(model)")
    ap.add_argument("--stop-after", default="up.1",
                    help="the tap the early-stopped forward ends after (down.N, mid or up.N)")
    ap.add_argument("--compare-only", action="store_true",
                    help="only compare OUT_DIR/<config>/ours.safetensors with reference.safetensors")
    args = ap.parse_args()
    configs = TINY_CONFIGS if args.tiny else CONFIGS
    args.configs = args.configs or ",".join(configs)
    args.batch = args.batch or (2 if args.tiny else 8)
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "f32")
    json_path = args.json or os.path.join(args.out_dir, "bench_unet.json")
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in configs]
    if unknown:
        sys.exit(f"unknown configs {unknown}; known: {list(configs)}" + ("" if args.tiny else " (or --tiny)"))
    for name in names:
        if args.stop_after not in tap_names(configs[name]):
            sys.exit(f"--stop-after {args.stop_after}: not a tap of {name} ({', '.join(tap_names(configs[name]))})")

    results = load_results(json_path)
    if not args.compare_only:
        import diffusers

        if args.device == "cuda" and not torch.cuda.is_available():
            sys.exit("needs a CUDA GPU (the timings and the reference are taken on it); --device cpu --tiny "
                     "for a smoke test")
        device = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
        results["env"] = {"device": device, "torch": torch.__version__, "diffusers": diffusers.__version__,
                          "attention": "SDPA (AttnProcessor2_0)"}
        for name in names:
            results[name] = prepare_and_time(name, configs[name], args, list(configs).index(name) + 1)
            print("\n".join(["next, revelio:"] + revelio_commands(name, configs[name], args)), file=sys.stderr)
    compare_and_write(results, names, args.out_dir, json_path)

if __name__ == "__main__":
    main()
