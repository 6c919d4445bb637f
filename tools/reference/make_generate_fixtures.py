"""A tiny random-weight Stable Diffusion pipeline for `revelio generate`, and what diffusers'
StableDiffusionPipeline samples with it; plus a tiny DiT. Every attention head dim is one the
CUDA kernels do not take natively (U-Net 12, text encoder 4, DiT 12).

Writes tests/fixtures/generate/:
  sd/                     the pipeline as diffusers and transformers save it: model_index.json,
                          unet/, vae/, text_encoder/, tokenizer/ (tokenizer.json only, as
                          transformers 5 saves it: a byte-level BPE in CLIP's format), scheduler/
                          (SD 1.4's PNDM config); random weights, every parameter perturbed
  dit/                    a DiTTransformer2DModel folder (attention_head_dim 12)
  expected.safetensors    (H x W = HEIGHT x WIDTH pixels, latents [2, 4, H/2, W/2]):
    init                  revelio's initial latents of samples 0 and 1 for SEED (rng::derive(SEED,
                          [i, 0]), the generator ported in common.py)
    cfg.final, cfg.images StableDiffusionPipeline(PROMPTS, latents=init, 10 steps, guidance 7.5,
                          DDIMScheduler.from_config(the folder's), output_type "latent" / "np"
                          (images [2, 3, H, W] in [0, 1], before rounding to 8 bits))
    neg.final             the same with NEGATIVE prompts
    eta.final             eta ETA, the step's noise of sample i at step k being revelio's
                          (rng::derive(SEED, [i, 1, k])), passed to DDIMScheduler.step as
                          `variance_noise` (diffusers draws it from `generator` otherwise)
    v.final               a v-prediction scheduler config (prediction_type "v_prediction")
    nocfg.final           guidance 1 (no classifier-free guidance: the cond batch only)
    hook.<tap>.s<k>       a forward hook's output - input of module <tap> at step k of the cfg run:
                          [4, C, h, w], rows [uncond 0, uncond 1, cond 0, cond 1]
    dit.x, dit.t, dit.y, dit.out   the DiT's inputs and output

  /work/venv/bin/python tools/reference/make_generate_fixtures.py
"""

import functools
import json
import os
import shutil
import sys
import tempfile

import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DiTTransformer2DModel, PNDMScheduler, StableDiffusionPipeline,
                       UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

OUT = os.path.join(common.FIXTURES, "generate")
SD = os.path.join(OUT, "sd")
HEIGHT, WIDTH = 32, 24
SEED = 7
STEPS = 10
ETA = 0.5
PROMPTS = ["a photo of a cat", "an apple on a table"]
NEGATIVE = ["blurry", "a photo of a dog"]
HOOKS = {"mid_block.attentions.0": [0, 9], "up_blocks.1.attentions.0": [9], "down_blocks.1.attentions.0": [4]}
MERGES = common.TINY_MERGES + [("c", "a"), ("ca", "t</w>"), ("a", "n</w>"), ("o", "n</w>"), ("p", "p")]


def build_pipeline():
    with tempfile.TemporaryDirectory() as tmp:
        vocab_size = common.write_tiny_tokenizer(tmp, MERGES)
        CLIPTokenizer.from_pretrained(tmp).save_pretrained(os.path.join(SD, "tokenizer"))
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(12, 24),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=4, cross_attention_dim=32, attention_head_dim=(1, 2),
    ).eval()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(16, 24), layers_per_block=1, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8, sample_size=HEIGHT,
    ).eval()
    text = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=8, max_position_embeddings=77,
        vocab_size=vocab_size, hidden_act="quick_gelu", bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1, projection_dim=32)).eval()
    for seed, m in enumerate([unet, vae, text]):
        common.perturb(m, 300 + seed)
    unet.save_pretrained(os.path.join(SD, "unet"))
    vae.save_pretrained(os.path.join(SD, "vae"))
    text.save_pretrained(os.path.join(SD, "text_encoder"))
    sched = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                          set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)
    sched.save_pretrained(os.path.join(SD, "scheduler"))
    # SD 1.4's scheduler_config.json also says clip_sample false (for the DDIM swap).
    path = os.path.join(SD, "scheduler", "scheduler_config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg["clip_sample"] = False
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
             "feature_extractor": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
             "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    with open(os.path.join(SD, "model_index.json"), "w") as f:
        json.dump(index, f, indent=1)
    assert sorted(os.listdir(os.path.join(SD, "tokenizer"))) == ["tokenizer.json", "tokenizer_config.json"]


def pipeline(**scheduler_overrides):
    """The saved folder as diffusers loads it, its PNDM scheduler swapped for DDIM."""
    pipe = StableDiffusionPipeline.from_pretrained(SD, safety_checker=None, feature_extractor=None,
                                                   requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, **scheduler_overrides)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def with_variance_noise(pipe, n, shape):
    """Makes pipe.scheduler.step use revelio's noise of sample i at step k."""
    step, calls = pipe.scheduler.step, [0]

    @functools.wraps(step)  # keeps step's signature, which the pipeline inspects for `eta`
    def patched(*args, **kwargs):
        k = calls[0]
        calls[0] += 1
        assert kwargs.get("eta") == ETA, kwargs
        noise = torch.stack([common.normal_tensor(common.derive(SEED, [i, 1, k]), shape) for i in range(n)])
        return step(*args, variance_noise=noise, **kwargs)

    pipe.scheduler.step = patched


@torch.no_grad()
def main():
    shutil.rmtree(OUT, ignore_errors=True)
    build_pipeline()
    shape = (4, HEIGHT // 2, WIDTH // 2)
    init = torch.stack([common.normal_tensor(common.derive(SEED, [i, 0]), shape) for i in range(len(PROMPTS))])
    kw = dict(height=HEIGHT, width=WIDTH, num_inference_steps=STEPS, latents=init)
    out = {"init": init}

    pipe = pipeline()
    hooked, step = {}, [0]
    modules = dict(pipe.unet.named_modules())

    def hook(name):
        def f(module, args, output):
            if step[0] in HOOKS[name]:
                o = output[0] if isinstance(output, tuple) else output
                hooked[f"hook.{name}.s{step[0]}"] = (o - args[0]).clone()
        return f

    handles = [modules[name].register_forward_hook(hook(name)) for name in HOOKS]

    def count_steps(pipe_, i, t, kwargs):
        step[0] = i + 1
        return kwargs

    out["cfg.final"] = pipe(PROMPTS, guidance_scale=7.5, output_type="latent", callback_on_step_end=count_steps, **kw).images
    for h in handles:
        h.remove()
    out.update(hooked)
    images = pipe(PROMPTS, guidance_scale=7.5, output_type="np", **kw).images
    out["cfg.images"] = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    out["neg.final"] = pipe(PROMPTS, negative_prompt=NEGATIVE, guidance_scale=7.5, output_type="latent", **kw).images
    out["nocfg.final"] = pipe(PROMPTS, guidance_scale=1.0, output_type="latent", **kw).images
    eta_pipe = pipeline()
    with_variance_noise(eta_pipe, len(PROMPTS), shape)
    out["eta.final"] = eta_pipe(PROMPTS, guidance_scale=7.5, eta=ETA, output_type="latent", **kw).images
    out["v.final"] = pipeline(prediction_type="v_prediction")(PROMPTS, guidance_scale=7.5, output_type="latent", **kw).images

    dit = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=12, in_channels=4, num_layers=2,
                                sample_size=8, patch_size=2, num_embeds_ada_norm=10).eval()
    common.perturb(dit, 400)
    dit.save_pretrained(os.path.join(OUT, "dit"))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=g)
    t, y = torch.tensor([25.0, 700.0]), torch.tensor([3, 10])
    out.update({"dit.x": x, "dit.t": t, "dit.y": y, "dit.out": dit(x, timestep=t, class_labels=y).sample})

    meta = {"height": HEIGHT, "width": WIDTH, "seed": SEED, "steps": STEPS, "eta": ETA, "prompts": json.dumps(PROMPTS),
            "negative": json.dumps(NEGATIVE), "hooks": json.dumps(HOOKS)}
    common.save("generate/expected.safetensors", out, "make_generate_fixtures.py", meta)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"generate fixtures: {total / 1024:.0f} KiB", file=sys.stderr)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
