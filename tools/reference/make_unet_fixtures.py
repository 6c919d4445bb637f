"""Reference values for revelio's UNet2DConditionModel (src/models/unet/), from diffusers.

Two random-weight U-Nets built with diffusers' own UNet2DConditionModel, every parameter moved off
its init (common.perturb), then rounded through f16 so that the weights can be stored in half
precision (half the fixture size; the reference itself runs in f32 on those rounded values).

  sd1  SD 1.x layout: CrossAttnDownBlock2D x2 + DownBlock2D, UpBlock2D + CrossAttnUpBlock2D x2,
       1x1-conv proj_in/proj_out, `attention_head_dim` = 2 given as an int (diffusers reads it as
       the number of heads), layers_per_block 2, cross_attention_dim 24 (not a channel count),
       batch 2 with timesteps 25 and 731, a 16x16 latent, 7 text tokens. Weights in the `fp16`
       variant file (diffusion_pytorch_model.fp16.safetensors).
  sd2  SD 2.x layout with linear proj_in/proj_out, `attention_head_dim` as a per-level list of
       head counts, upcast_attention, transformer_layers_per_block [1, 2, 1], layers_per_block
       [1, 2, 1], and values SD does not use but the config allows, to prove they are read:
       flip_sin_to_cos false, freq_shift 1, resnet_time_scale_shift "scale_shift",
       center_input_sample, mid_block_scale_factor 1.3, downsample_padding 0, conv_in_kernel 5,
       conv_out_kernel 1; a 13x11 latent (13x11 -> 6x5 -> 3x2 with downsample_padding 0, so the
       up path needs upsample_size: 3x2 -> 6x5 and 6x5 -> 13x11, not 2x),
       timesteps 999 and 0, 5 text tokens of width 20. Weights (f16 values) in the plain file
       name diffusion_pytorch_model.safetensors.

Writes tests/fixtures/unet/<config>/config.json + weights, and tests/fixtures/unet/<config>.safetensors:
  sample [B, 4, H, W], timestep [B], encoder_hidden_states [B, S, D]   the inputs
  tap.<name>                                                           each tap in TAPS, as the
      caller names it; `:delta` = module output minus module input; block outputs are the first
      element of diffusers' (hidden_states, res_samples) tuples; transformer_blocks taps are
      token-major [B, H*W, C] as diffusers computes them; `tap.out` is the U-Net's output.
Metadata `taps` lists the tap names (JSON).

  /work/refvenv/bin/python tools/reference/make_unet_fixtures.py
"""

import json
import os

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

from common import FIXTURES, perturb, save

SCRIPT = "make_unet_fixtures.py"

CONFIGS = {
    "sd1": dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 16, 16),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=2,
        attention_head_dim=2,
        norm_num_groups=8,
        cross_attention_dim=24,
    ),
    "sd2": dict(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16, 16),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=[1, 2, 1],
        transformer_layers_per_block=[1, 2, 1],
        attention_head_dim=[1, 2, 1],
        norm_num_groups=4,
        cross_attention_dim=20,
        use_linear_projection=True,
        upcast_attention=True,
        flip_sin_to_cos=False,
        freq_shift=1,
        resnet_time_scale_shift="scale_shift",
        center_input_sample=True,
        mid_block_scale_factor=1.3,
        downsample_padding=0,
        conv_in_kernel=5,
        conv_out_kernel=1,
    ),
}

INPUTS = {
    # batch, latent H, W, text tokens, timesteps
    "sd1": dict(b=2, h=16, w=16, s=7, t=[25.0, 731.0]),
    "sd2": dict(b=2, h=13, w=11, s=5, t=[999.0, 0.0]),
}

VARIANT = {"sd1": "fp16", "sd2": None}

TAPS = [
    "down.0",
    "down_blocks.1.resnets.0",
    "down.1",
    "down.2",
    "mid_block.attentions.0:delta",
    "mid",
    "up.0",
    "up_blocks.1.attentions.0",
    "up_blocks.1.attentions.1.transformer_blocks.0:delta",
    "up.1",
    "up.2",
    "out",
]

ALIASES = {"mid": "mid_block", "out": "conv_out"}


def module_path(name):
    base = name.split(":")[0]
    if base in ALIASES:
        return ALIASES[base]
    for short, full in (("down.", "down_blocks."), ("up.", "up_blocks.")):
        if base.startswith(short):
            return full + base[len(short):]
    return base


def first(x):
    return x[0] if isinstance(x, tuple) else x


def build(name, seed):
    torch.manual_seed(seed)
    model = UNet2DConditionModel(**CONFIGS[name]).eval()
    perturb(model, seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    out_dir = os.path.join(FIXTURES, "unet", name)
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, f))
    model.save_config(out_dir)
    variant = VARIANT[name]
    fname = "diffusion_pytorch_model" + (f".{variant}" if variant else "") + ".safetensors"
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out_dir, fname), metadata={"format": "pt"})
    # The reference runs on the model as diffusers loads it back from the folder.
    return UNet2DConditionModel.from_pretrained(out_dir, variant=variant, torch_dtype=torch.float32).eval()


def main():
    for i, name in enumerate(CONFIGS):
        model = build(name, seed=100 + i)
        inp = INPUTS[name]
        g = torch.Generator().manual_seed(200 + i)
        sample = torch.randn(inp["b"], 4, inp["h"], inp["w"], generator=g)
        ehs = torch.randn(inp["b"], inp["s"], CONFIGS[name]["cross_attention_dim"], generator=g)
        timestep = torch.tensor(inp["t"], dtype=torch.float32)

        taps = {}
        hooks = []
        for tap in TAPS:
            if tap == "out":
                continue
            delta = tap.endswith(":delta")

            def hook(module, args, kwargs, output, tap=tap, delta=delta):
                out = first(output)
                if delta:
                    x = args[0] if args else kwargs["hidden_states"]
                    out = out - x
                taps[tap] = out.detach().clone()

            hooks.append(model.get_submodule(module_path(tap)).register_forward_hook(hook, with_kwargs=True))
        with torch.no_grad():
            out = model(sample, timestep, encoder_hidden_states=ehs).sample
        for h in hooks:
            h.remove()
        taps["out"] = out

        tensors = {"sample": sample, "timestep": timestep, "encoder_hidden_states": ehs}
        for tap in TAPS:
            tensors[f"tap.{tap}"] = taps[tap]
        save(f"unet/{name}.safetensors", tensors, SCRIPT, {"taps": json.dumps(TAPS)})


if __name__ == "__main__":
    main()
