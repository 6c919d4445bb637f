"""A tiny Stable Diffusion pipeline folder for `revelio extract`, and the features the Revelio
reference pipeline (SD-kSAE/extract_feature.py, section 1 of shared/spec/revelio.md) computes
with it, from diffusers and transformers.

Writes tests/fixtures/extract/:
  sd/                   a pipeline folder as diffusers lays it out: model_index.json, unet/,
                        vae/, text_encoder/, tokenizer/ (a 519-token byte-level BPE in CLIP's
                        format, ids small enough for a tiny embedding), scheduler/ (SD 1.5's
                        PNDM config); random weights, every parameter perturbed
  expected.safetensors  for the images IMAGES (tests/fixtures/images/decoded/*.png, PIL's own
                        decodings, so decoding is exact) at resolution RES:
    sd.<layer>.t<t>     f32 [N, C]: the reference's features, mean-pooled over space: torchvision
                        Resize + CenterCrop + [-1, 1]; VAE posterior mode x scaling_factor;
                        DDPMScheduler.add_noise at t with the noise revelio draws for image i
                        (rng::derive(SEED, [i, t, 0]), counters 0.. over [4, h, w] in CHW
                        order; the generator is ported below); the U-Net with the empty prompt's
                        last_hidden_state, the layer's output read by a forward hook
    sd.up.1.t<t>.map    f32 [N, C, h, w]: the same without pooling, for the first timestep
    dit.block.<k>       f32 [N, D]: DiT (tests/fixtures/dit/c1000/transformer) as the reference's
                        DiTTower runs it: the clean latent (no noise), class 1000 (null),
                        timestep DIT_T, block k's output tokens averaged

  PYTHONPATH=/tmp/pil95 /work/refvenv/bin/python tools/reference/make_extract_fixtures.py
(the reference's Pillow 9.5.0, as for make_image_fixtures.py)
"""

import json
import os
import sys

import PIL
import torch
from diffusers import AutoencoderKL, DDPMScheduler, DiTTransformer2DModel, PNDMScheduler, UNet2DConditionModel
from PIL import Image
from torchvision import transforms as T
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

OUT = os.path.join(common.FIXTURES, "extract")
SD = os.path.join(OUT, "sd")
IMAGES = ["big_down", "gray", "palette", "rgb_odd", "rgba", "tiny_up"]
RES = 16
SEED = 5
TIMESTEPS = [25, 300]
LAYERS = {"mid": "mid_block", "up.0": "up_blocks.0", "up.1": "up_blocks.1"}
DIT_T = 25
DIT_BLOCKS = [0, 1]


def noise(i, t, shape):
    return common.normal_tensor(common.derive(SEED, [i, t, 0]), shape)


def build_pipeline():
    vocab_size = common.write_tiny_tokenizer(os.path.join(SD, "tokenizer"))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=4, cross_attention_dim=16, attention_head_dim=1,
    ).eval()
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(8, 8), layers_per_block=1, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=4, sample_size=RES,
    ).eval()
    text = CLIPTextModel(CLIPTextConfig(
        hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
        vocab_size=vocab_size, hidden_act="quick_gelu", bos_token_id=0, eos_token_id=2, pad_token_id=1,
        projection_dim=16)).eval()
    for seed, m in enumerate([unet, vae, text]):
        common.perturb(m, 100 + seed)
    unet.save_pretrained(os.path.join(SD, "unet"))
    vae.save_pretrained(os.path.join(SD, "vae"))
    text.save_pretrained(os.path.join(SD, "text_encoder"))
    sched = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                          set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)
    sched.save_pretrained(os.path.join(SD, "scheduler"))
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
             "feature_extractor": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
             "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    with open(os.path.join(SD, "model_index.json"), "w") as f:
        json.dump(index, f, indent=1)
    return unet, vae, text


@torch.no_grad()
def main():
    if int(PIL.__version__.split(".")[0]) >= 13:
        sys.exit(f"Pillow {PIL.__version__}: use the reference's pillow 9.5.0 (see this script's docstring)")
    unet, vae, text = build_pipeline()
    tok = CLIPTokenizer(os.path.join(SD, "tokenizer", "vocab.json"), os.path.join(SD, "tokenizer", "merges.txt"))
    ids = tok([""], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    empty = text(ids)[0]
    tf = T.Compose([T.Resize(RES), T.CenterCrop(RES), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
    decoded = os.path.join(common.FIXTURES, "images", "decoded")
    x = torch.stack([tf(Image.open(os.path.join(decoded, n + ".png")).convert("RGB")) for n in IMAGES])
    latents = vae.encode(x).latent_dist.mode() * vae.config.scaling_factor
    ddpm = DDPMScheduler.from_pretrained(os.path.join(SD, "scheduler"))
    out = {}
    captured = {}
    hooks = [dict(unet.named_modules())[p].register_forward_hook(
        lambda m, i, o, name=name: captured.__setitem__(name, o[0] if isinstance(o, tuple) else o))
        for name, p in LAYERS.items()]
    for k, t in enumerate(TIMESTEPS):
        eps = torch.stack([noise(i, t, latents.shape[1:]) for i in range(len(IMAGES))])
        xt = ddpm.add_noise(latents, eps, torch.tensor([t] * len(IMAGES)))
        unet(xt, torch.tensor([t] * len(IMAGES)), encoder_hidden_states=empty.expand(len(IMAGES), -1, -1))
        for name, v in captured.items():
            out[f"sd.{name}.t{t}"] = v.mean(dim=(2, 3))
            if name == "up.1" and k == 0:
                out[f"sd.up.1.t{t}.map"] = v
    for h in hooks:
        h.remove()

    dit = DiTTransformer2DModel.from_pretrained(os.path.join(common.FIXTURES, "dit", "c1000", "transformer")).eval()
    blocks = {}
    hooks = [dit.transformer_blocks[k].register_forward_hook(lambda m, i, o, k=k: blocks.__setitem__(k, o))
             for k in DIT_BLOCKS]
    n = len(IMAGES)
    dit(latents, timestep=torch.tensor([DIT_T] * n), class_labels=torch.tensor([1000] * n))
    for k in DIT_BLOCKS:
        out[f"dit.block.{k}"] = blocks[k].mean(dim=1)
    for h in hooks:
        h.remove()
    common.save("extract/expected.safetensors", out, "make_extract_fixtures.py",
                {"images": ",".join(IMAGES), "resolution": RES, "seed": SEED, "pillow": PIL.__version__})
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"extract fixtures: {total / 1024:.0f} KiB", file=sys.stderr)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
