"""Single-file CompVis/LDM checkpoints for revelio's key map (src/models/ldm.rs), made from tiny
diffusers/transformers components and checked against diffusers' own converters.

For each kind (sd1, sd2) this builds a tiny pipeline's components with random, perturbed
weights rounded to f16 (so the f16 files hold them exactly): a UNet2DConditionModel (SD 1.x:
conv proj_in/out, one head count; SD 2.x: linear projections, per-level head counts), an
AutoencoderKL, and the text encoder (SD 1.x: CLIPTextModel, quick_gelu, eos 2; SD 2.x: a
CLIPTextModel of 23 layers, gelu, the diffusers side of OpenCLIP's 24 layers). It writes them
into one LDM single file with the inverse of diffusers' mapping (written here, independently),
adds what real files carry besides (SD 1.x: the text encoder's `position_ids`; SD 2.x:
OpenCLIP's 24th layer, `text_projection` and `logit_scale`; both: `model_ema.decay` and a
schedule buffer), and asserts that diffusers 0.42's `convert_ldm_unet_checkpoint`,
`convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint` / `convert_open_clip_checkpoint`
map the file back to exactly the components' state dicts.

Writes tests/fixtures/ldm/:
  <kind>.safetensors           the single file (f16; i64 position_ids)
  <kind>_expected.safetensors  unet, vae, text_encoder: each component's diffusers/transformers
                               state dict (`text_model.` keys) as one f16 vector, the tensors
                               one after the other in the order of the metadata's
                               <component>_keys (JSON [[key, shape], ...]);
                               clip.input_ids, clip.last_hidden_state, clip.pooler_output: the
                               text encoder run by transformers (f32);
                               metadata unet_config, vae_config, text_encoder_config (JSON)

  /work/refvenv/bin/python tools/reference/make_ldm_fixtures.py
"""

import json
import os

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

import common

SCRIPT = "make_ldm_fixtures.py"
OUT = os.path.join(common.FIXTURES, "ldm")

SD_DOWN = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
SD_UP = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")

KINDS = {
    "sd1": dict(
        unet=dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(2, 4, 4), layers_per_block=2,
                  norm_num_groups=2, cross_attention_dim=8, attention_head_dim=1,
                  down_block_types=SD_DOWN, up_block_types=SD_UP),
        vae=dict(block_out_channels=(2, 4, 4, 4), norm_num_groups=2, layers_per_block=2, latent_channels=4,
                 down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4),
        clip=dict(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=1,
                  max_position_embeddings=77, vocab_size=64, hidden_act="quick_gelu",
                  bos_token_id=0, eos_token_id=2, pad_token_id=1),
        seed=11,
    ),
    "sd2": dict(
        unet=dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(2, 4, 4), layers_per_block=1,
                  norm_num_groups=2, cross_attention_dim=8, attention_head_dim=[1, 2, 2],
                  use_linear_projection=True, down_block_types=SD_DOWN, up_block_types=SD_UP),
        vae=dict(block_out_channels=(2, 4, 4), norm_num_groups=2, layers_per_block=1, latent_channels=4,
                 down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3),
        # OpenCLIP's 24 layers less the last, as diffusers' SD 2.x text_encoder/.
        clip=dict(hidden_size=8, intermediate_size=8, num_hidden_layers=23, num_attention_heads=1,
                  max_position_embeddings=77, vocab_size=64, hidden_act="gelu",
                  bos_token_id=0, eos_token_id=2, pad_token_id=1),
        seed=12,
    ),
}

RESNET_TO_LDM = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
                 "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
UNET_FIXED = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
              "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def unet_to_ldm(key, cfg):
    """diffusers UNet2DConditionModel key -> LDM key (without model.diffusion_model.)."""
    per_level = cfg["layers_per_block"] + 1
    module, param = key.rsplit(".", 1)
    if module in UNET_FIXED:
        return f"{UNET_FIXED[module]}.{param}"
    p = key.split(".")
    if p[0] == "down_blocks":
        level, what = int(p[1]), p[2]
        if what == "downsamplers":  # down_blocks.b.downsamplers.0.conv.X
            return f"input_blocks.{1 + level * per_level + cfg['layers_per_block']}.0.op.{p[-1]}"
        i = 1 + level * per_level + int(p[3])
        rest = ".".join(p[4:])
        if what == "resnets":
            m, prm = rest.rsplit(".", 1)
            return f"input_blocks.{i}.0.{RESNET_TO_LDM[m]}.{prm}"
        return f"input_blocks.{i}.1.{rest}"
    if p[0] == "mid_block":
        rest = ".".join(p[3:])
        if p[1] == "attentions":
            return f"middle_block.1.{rest}"
        m, prm = rest.rsplit(".", 1)
        return f"middle_block.{2 * int(p[2])}.{RESNET_TO_LDM[m]}.{prm}"
    if p[0] == "up_blocks":
        level, what = int(p[1]), p[2]
        if what == "upsamplers":  # index 1 after a resnet alone, 2 after resnet + attention
            has_attn = "CrossAttn" in cfg["up_block_types"][level]
            return f"output_blocks.{level * per_level + per_level - 1}.{2 if has_attn else 1}.conv.{p[-1]}"
        i = level * per_level + int(p[3])
        rest = ".".join(p[4:])
        if what == "resnets":
            m, prm = rest.rsplit(".", 1)
            return f"output_blocks.{i}.0.{RESNET_TO_LDM[m]}.{prm}"
        return f"output_blocks.{i}.1.{rest}"
    raise KeyError(key)


VAE_ATTN_TO_LDM = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_to_ldm(key, value, levels):
    """diffusers AutoencoderKL key and tensor -> LDM key (without first_stage_model.) and tensor."""
    coder, rest = key.split(".", 1) if key.startswith(("encoder.", "decoder.")) else ("", key)
    if not coder:
        return key, value  # quant_conv, post_quant_conv
    if rest.startswith("conv_norm_out."):
        return f"{coder}.norm_out.{rest.split('.')[-1]}", value
    if rest.startswith(("conv_in.", "conv_out.")):
        return key, value
    p = rest.split(".")
    resnet = lambda tail: tail.replace("conv_shortcut", "nin_shortcut")
    if p[0] == "mid_block":
        if p[1] == "resnets":
            return f"{coder}.mid.block_{int(p[2]) + 1}.{resnet('.'.join(p[3:]))}", value
        module, param = ".".join(p[3:]).rsplit(".", 1)
        if param == "weight" and module != "group_norm":
            value = value[:, :, None, None]  # linear [C, C] -> 1x1 conv [C, C, 1, 1]
        return f"{coder}.mid.attn_1.{VAE_ATTN_TO_LDM[module]}.{param}", value
    level = int(p[1])
    if coder == "decoder":
        level = levels - 1 - level
    name = "down" if coder == "encoder" else "up"
    if p[2] in ("downsamplers", "upsamplers"):
        return f"{coder}.{name}.{level}.{name}sample.conv.{p[-1]}", value
    return f"{coder}.{name}.{level}.block.{p[3]}.{resnet('.'.join(p[4:]))}", value


OPEN_CLIP_FIXED = {"embeddings.token_embedding.weight": "token_embedding.weight",
                   "embeddings.position_embedding.weight": "positional_embedding",
                   "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}
OPEN_CLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
                   "self_attn.out_proj": "attn.out_proj"}


def open_clip_layer(sd, i, prefix):
    """CLIPTextModel layer i's tensors (flat keys) -> OpenCLIP resblock i's (with prefix)."""
    out = {}
    src = f"encoder.layers.{i}."
    for param in ("weight", "bias"):
        qkv = [sd[f"{src}self_attn.{p}_proj.{param}"] for p in "qkv"]
        out[f"{prefix}transformer.resblocks.{i}.attn.in_proj_{param}"] = torch.cat(qkv, 0)
    for k, v in sd.items():
        if k.startswith(src) and ".self_attn.q_proj" not in k and ".self_attn.k_proj" not in k \
                and ".self_attn.v_proj" not in k:
            module, param = k[len(src):].rsplit(".", 1)
            out[f"{prefix}transformer.resblocks.{i}.{OPEN_CLIP_LAYER[module]}.{param}"] = v
    return out


def to_f16_exact(module):
    """Rounds every parameter through f16, so an f16 file holds it exactly."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())


def config_json(model):
    """A diffusers model's config.json, less its internal keys (`_use_default_values` is a set,
    in a different order on every run)."""
    return json.dumps({k: v for k, v in model.config.items() if not k.startswith("_")})


def same(what, got, want, ignore=()):
    got = {k: v for k, v in got.items() if k not in ignore}
    assert set(got) == set(want), f"{what}: keys differ: extra {sorted(set(got) - set(want))[:5]}, " \
                                  f"missing {sorted(set(want) - set(got))[:5]}"
    for k in want:
        assert got[k].shape == want[k].shape and torch.equal(got[k].float(), want[k].float()), f"{what}: {k} differs"


def main():
    for kind, spec in KINDS.items():
        torch.manual_seed(spec["seed"])
        unet = UNet2DConditionModel(**spec["unet"]).eval()
        vae = AutoencoderKL(**spec["vae"]).eval()
        clip = CLIPTextModel(CLIPTextConfig(**spec["clip"])).eval()
        for i, m in enumerate((unet, vae, clip)):
            common.perturb(m, spec["seed"] * 10 + i)
            to_f16_exact(m)
        unet_sd = {k: v.half() for k, v in unet.state_dict().items()}
        vae_sd = {k: v.half() for k, v in vae.state_dict().items()}
        clip_sd = {k: v.half() for k, v in clip.state_dict().items()}  # flat keys (transformers 5.23)
        levels = len(spec["vae"]["block_out_channels"])

        ldm = {}
        for k, v in unet_sd.items():
            ldm["model.diffusion_model." + unet_to_ldm(k, unet.config)] = v
        for k, v in vae_sd.items():
            lk, lv = vae_to_ldm(k, v, levels)
            ldm["first_stage_model." + lk] = lv.contiguous()
        g = torch.Generator().manual_seed(spec["seed"])
        if kind == "sd1":
            for k, v in clip_sd.items():
                ldm["cond_stage_model.transformer.text_model." + k] = v
            ldm["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
        else:
            prefix = "cond_stage_model.model."
            for k, v in clip_sd.items():
                if k in OPEN_CLIP_FIXED:
                    ldm[prefix + OPEN_CLIP_FIXED[k]] = v
            for i in range(spec["clip"]["num_hidden_layers"]):
                ldm.update(open_clip_layer(clip_sd, i, prefix))
            # OpenCLIP's 24th layer (random: SD 2.x does not use it), projection and temperature.
            for k, v in list(ldm.items()):
                if k.startswith(prefix + "transformer.resblocks.0."):
                    ldm[k.replace("resblocks.0.", "resblocks.23.")] = torch.randn(v.shape, generator=g).half()
            d = spec["clip"]["hidden_size"]
            ldm[prefix + "text_projection"] = torch.randn(d, d, generator=g).half()
            ldm[prefix + "logit_scale"] = torch.tensor(4.6052, dtype=torch.float16)
        ldm["model_ema.decay"] = torch.tensor(0.9999, dtype=torch.float16)
        ldm["alphas_cumprod"] = torch.rand(4, generator=g).half()

        # diffusers' converters must give the components back exactly.
        same(f"{kind} unet", convert_ldm_unet_checkpoint(ldm, unet.config), unet_sd)
        same(f"{kind} vae", convert_ldm_vae_checkpoint(ldm, vae.config), vae_sd)
        want_clip = {"text_model." + k: v for k, v in clip_sd.items()}
        if kind == "sd1":
            same(f"{kind} clip", convert_ldm_clip_checkpoint(ldm), want_clip,
                 ignore=("text_model.embeddings.position_ids",))
        else:
            same(f"{kind} clip", convert_open_clip_checkpoint(clip, ldm), want_clip)

        ids = torch.randint(3, spec["clip"]["vocab_size"] - 1, (2, 77), generator=g)
        ids[:, 0] = spec["clip"]["bos_token_id"]
        ids[0, 12:] = spec["clip"]["vocab_size"] - 1
        ids[1, 70] = spec["clip"]["vocab_size"] - 1
        ids[1, 71:] = spec["clip"]["pad_token_id"]
        with torch.no_grad():
            out = clip(input_ids=ids)
        expected = {"clip.input_ids": ids, "clip.last_hidden_state": out.last_hidden_state,
                    "clip.pooler_output": out.pooler_output}
        meta = {"unet_config": config_json(unet), "vae_config": config_json(vae),
                "text_encoder_config": clip.config.to_json_string()}
        for name, sd in (("unet", unet_sd), ("vae", vae_sd), ("text_encoder", want_clip)):
            keys = sorted(sd)
            expected[name] = torch.cat([sd[k].reshape(-1) for k in keys])
            meta[f"{name}_keys"] = json.dumps([[k, list(sd[k].shape)] for k in keys], separators=(",", ":"))

        os.makedirs(OUT, exist_ok=True)
        path = os.path.join(OUT, f"{kind}.safetensors")
        save_file({k: v.contiguous() for k, v in ldm.items()}, path, metadata={"format": "pt"})
        print(f"wrote {os.path.relpath(path, common.ROOT)} ({len(ldm)} tensors, {os.path.getsize(path) / 1024:.0f} KiB)")
        common.save(f"ldm/{kind}_expected.safetensors", expected, SCRIPT, meta)


if __name__ == "__main__":
    main()
