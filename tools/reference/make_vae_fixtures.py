"""Reference values for revelio's AutoencoderKL (src/models/vae/), from diffusers.

Two random-weight VAEs built with diffusers' own AutoencoderKL, every parameter moved off its init
(common.perturb):

  sd   2 levels (8, 16), layers_per_block 1, the SD layout otherwise (quant_conv, post_quant_conv,
       mid-block attention: one head of dim 16 over the latent's pixels), scaling_factor 0.18215;
       f32 weights in diffusion_pytorch_model.safetensors. Latent 12x10 for 24x20 images.
  lite 3 levels (8, 8, 16), layers_per_block 2, no post_quant_conv, no mid-block attention,
       scaling_factor 0.13025; weights rounded through f16 and stored in the `fp16` variant file.
       Latent 6x5 for 24x20 images.

Writes tests/fixtures/vae/<config>/config.json + weights, and tests/fixtures/vae/<config>.safetensors:
  images [2, 3, 24, 20] in [-1, 1]     encoder input
  latent_mean, latent_logvar           the posterior of encode(images) (logvar clamped to
                                       [-30, 20] as DiagonalGaussianDistribution does)
  latents [2, 4, h, w]                 decoder input (standard normal)
  decoded [2, 3, 24, 20]               decode(latents)
  tap.<name>                           module outputs (`:delta` = output minus input) of the
                                       encode and decode passes above, names as in TAPS
Metadata `taps` lists the tap names (JSON).

  /work/refvenv/bin/python tools/reference/make_vae_fixtures.py
"""

import json
import os

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

from common import FIXTURES, perturb, save

SCRIPT = "make_vae_fixtures.py"

CONFIGS = {
    "sd": dict(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=4,
        sample_size=24,
        scaling_factor=0.18215,
    ),
    "lite": dict(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8, 16),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=2,
        norm_num_groups=4,
        latent_channels=4,
        sample_size=24,
        scaling_factor=0.13025,
        use_post_quant_conv=False,
        mid_block_add_attention=False,
    ),
}

VARIANT = {"sd": None, "lite": "fp16"}

TAPS = {
    "sd": [
        "encoder.down_blocks.0",
        "encoder.down_blocks.1.resnets.0",
        "encoder.mid_block.attentions.0:delta",
        "encoder.mid_block",
        "quant_conv",
        "decoder.mid_block",
        "decoder.up_blocks.0.resnets.1",
    ],
    "lite": [
        "encoder.down_blocks.0",
        "encoder.down_blocks.1",
        "encoder.down_blocks.2",
        "encoder.mid_block",
        "decoder.mid_block.resnets.1:delta",
        "decoder.up_blocks.0",
        "decoder.up_blocks.1.resnets.0",
    ],
}


def build(name, seed):
    torch.manual_seed(seed)
    model = AutoencoderKL(**CONFIGS[name]).eval()
    perturb(model, seed)
    variant = VARIANT[name]
    if variant == "fp16":
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
    out_dir = os.path.join(FIXTURES, "vae", name)
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, f))
    model.save_config(out_dir)
    fname = "diffusion_pytorch_model" + (f".{variant}" if variant else "") + ".safetensors"
    dtype = torch.float16 if variant == "fp16" else torch.float32
    state = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out_dir, fname), metadata={"format": "pt"})
    # The reference runs on the model as diffusers loads it back from the folder.
    return AutoencoderKL.from_pretrained(out_dir, variant=variant, torch_dtype=torch.float32).eval()


def main():
    for i, name in enumerate(CONFIGS):
        model = build(name, seed=300 + i)
        g = torch.Generator().manual_seed(400 + i)
        images = torch.rand(2, 3, 24, 20, generator=g) * 2 - 1
        levels = len(CONFIGS[name]["block_out_channels"]) - 1
        latents = torch.randn(2, 4, 24 >> levels, 20 >> levels, generator=g)

        taps = {}
        hooks = []
        for tap in TAPS[name]:
            delta = tap.endswith(":delta")

            def hook(module, args, kwargs, output, tap=tap, delta=delta):
                out = output
                if delta:
                    x = args[0] if args else kwargs["hidden_states"]
                    out = out - x
                taps[tap] = out.detach().clone()

            path = tap.split(":")[0]
            hooks.append(model.get_submodule(path).register_forward_hook(hook, with_kwargs=True))
        with torch.no_grad():
            posterior = model.encode(images).latent_dist
            decoded = model.decode(latents).sample
        for h in hooks:
            h.remove()

        tensors = {
            "images": images,
            "latent_mean": posterior.mean,
            "latent_logvar": posterior.logvar,
            "latents": latents,
            "decoded": decoded,
        }
        for tap in TAPS[name]:
            tensors[f"tap.{tap}"] = taps[tap]
        save(f"vae/{name}.safetensors", tensors, SCRIPT, {"taps": json.dumps(TAPS[name])})


if __name__ == "__main__":
    main()
