"""Reference activations for revelio's DiT (src/models/dit/), from diffusers' DiTTransformer2DModel.

Builds small random-weight DiTs, perturbs every parameter (common.perturb), rounds the weights
through f16 (the files store f16 to stay small; both sides compute in f32 from the same values),
and writes for each config C under tests/fixtures/dit/C/:

  transformer/config.json                       the diffusers config
  transformer/diffusion_pytorch_model.safetensors   weights in diffusers names (f16)
  io.safetensors                                for each input case K:
    K.hidden_states f32 [B, 4, H, W], K.timestep f32 [B], K.class_labels i64 [B]
    K.sample        f32 [B, out_channels, H, W]  the model output
    K.pos_embed     f32 [B, D, h, w]  patch embedding + position embedding, as a 2D map
    K.block.N       f32 [B, D, h, w]  output of transformer_blocks[N], as a 2D map: the tokens
                    [B, h*w, D] (row-major patch order) reshaped to [B, h, w, D] and permuted
    metadata `cases` (JSON list of K), `num_layers`

Configs (batch 2, different timesteps and labels per sample, the null label in each):
  c1000  width 16 (2 heads of 8), 2 blocks, patch 2, 8x8 latents, the real 1000 classes + null
         class 1000. Its blocks share one timestep/label embedder (as every converted DiT
         checkpoint does), so it is also exported under the original facebookresearch/DiT key
         names in original/DiT-T-2-64x64.safetensors (+ config.json: width 16 has no head count
         in the DiT family table). Its config.json is written as the Hub's facebook/DiT-XL-2-*
         files are: `_class_name: Transformer2DModel` with that class's extra keys.
  p2     width 32 (2 heads of 16), 3 blocks, patch 2, 8x8 latents, 10 classes (null = 10); cases
         `native` (8x8), `larger` (10x10: the position embedding is recomputed with base size 4,
         positions i / 1.25) and `wide` (8x12: a non-square grid). diffusers' unpatchify assumes a
         square grid (h = w = int(sqrt(T))), so for `wide` the output is unpatchified here from
         proj_out_2's tokens with the real h, w.
  p4     width 32 (4 heads of 8), 2 blocks, patch 4, 16x16 latents, 10 classes, attention_bias
         false, norm_elementwise_affine true (norm3 has weight and bias), norm_eps 1e-6.

  /work/refvenv/bin/python tools/reference/make_dit_fixtures.py
"""

import json
import os
import sys

import torch
from diffusers import DiTTransformer2DModel
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402
from convert_dit_checkpoint import diffusers_to_original, original_to_diffusers  # noqa: E402

SCRIPT = "make_dit_fixtures.py"
OUT = os.path.join(common.FIXTURES, "dit")

CONFIGS = {
    "c1000": dict(
        model=dict(num_attention_heads=2, attention_head_dim=8, num_layers=2, patch_size=2, sample_size=8,
                   in_channels=4, out_channels=8, num_embeds_ada_norm=1000),
        cases={"native": dict(hw=(8, 8), timestep=[0.0, 999.0], labels=[517, 1000])},
        tie_embedders=True,
    ),
    "p2": dict(
        model=dict(num_attention_heads=2, attention_head_dim=16, num_layers=3, patch_size=2, sample_size=8,
                   in_channels=4, out_channels=8, num_embeds_ada_norm=10),
        cases={
            "native": dict(hw=(8, 8), timestep=[25.0, 731.0], labels=[3, 10]),
            "larger": dict(hw=(10, 10), timestep=[500.0, 1.0], labels=[10, 7]),
            "wide": dict(hw=(8, 12), timestep=[250.0, 999.0], labels=[0, 10]),
        },
    ),
    "p4": dict(
        model=dict(num_attention_heads=4, attention_head_dim=8, num_layers=2, patch_size=4, sample_size=16,
                   in_channels=4, out_channels=8, num_embeds_ada_norm=10, attention_bias=False,
                   norm_elementwise_affine=True, norm_eps=1e-6),
        cases={"native": dict(hw=(16, 16), timestep=[100.0, 900.0], labels=[10, 9])},
    ),
}

# The Hub's facebook/DiT-XL-2-256 transformer/config.json keys (diffusers 0.12, Transformer2DModel)
# that DiTTransformer2DModel does not have; diffusers remaps that class to DiTTransformer2DModel.
LEGACY_KEYS = {"cross_attention_dim": None, "num_vector_embeds": None, "only_cross_attention": False,
               "use_linear_projection": False}


def to_map(tokens, h, w):
    """[B, h*w, D] tokens in row-major patch order -> [B, D, h, w]."""
    b, t, d = tokens.shape
    assert t == h * w
    return tokens.reshape(b, h, w, d).permute(0, 3, 1, 2).contiguous()


def build(name, spec, seed):
    torch.manual_seed(seed)
    model = DiTTransformer2DModel(**spec["model"]).eval()
    common.perturb(model, seed)
    with torch.no_grad():
        if spec.get("tie_embedders"):
            first = model.transformer_blocks[0].norm1.emb
            for block in model.transformer_blocks[1:]:
                block.norm1.emb.load_state_dict(first.state_dict())
        for p in model.parameters():
            p.copy_(p.half().float())
    return model


def run(model, x, t, y):
    """diffusers' forward, recording pos_embed, every block and proj_out_2 by forward hooks."""
    p = model.config.patch_size
    h, w = x.shape[2] // p, x.shape[3] // p
    rec = {}
    hooks = [model.pos_embed.register_forward_hook(lambda m, i, o: rec.__setitem__("pos_embed", o))]
    for n, block in enumerate(model.transformer_blocks):
        hooks.append(block.register_forward_hook(lambda m, i, o, n=n: rec.__setitem__(f"block.{n}", o)))
    hooks.append(model.proj_out_2.register_forward_hook(lambda m, i, o: rec.__setitem__("proj_out_2", o)))
    with torch.no_grad():
        sample = model(x, timestep=t, class_labels=y).sample
    for hk in hooks:
        hk.remove()
    out = {k: to_map(v, h, w) for k, v in rec.items() if k != "proj_out_2"}
    if h == w:
        out["sample"] = sample
    else:
        # diffusers' unpatchify takes h = w = int(sqrt(T)); with the real grid:
        c = model.out_channels
        tok = rec["proj_out_2"].reshape(x.shape[0], h, w, p, p, c)
        out["sample"] = torch.einsum("nhwpqc->nchpwq", tok).reshape(x.shape[0], c, h * p, w * p)
    return out


def save_model(model, folder, legacy_config):
    os.makedirs(folder, exist_ok=True)
    model.save_config(folder)
    if legacy_config:
        path = os.path.join(folder, "config.json")
        with open(path) as f:
            cfg = json.load(f)
        cfg["_class_name"] = "Transformer2DModel"
        cfg.update(LEGACY_KEYS)
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(folder, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})


def main():
    for seed, (name, spec) in enumerate(CONFIGS.items()):
        model = build(name, spec, seed + 1)
        folder = os.path.join(OUT, name, "transformer")
        legacy = bool(spec.get("tie_embedders"))
        save_model(model, folder, legacy)
        # The saved folder must load back into the same model (the legacy config through
        # diffusers' Transformer2DModel -> DiTTransformer2DModel remapping).
        reloaded = DiTTransformer2DModel.from_pretrained(folder, torch_dtype=torch.float32).eval()

        tensors = {}
        g = torch.Generator().manual_seed(100 + seed)
        for case, c in spec["cases"].items():
            hgt, wid = c["hw"]
            x = torch.randn(2, model.config.in_channels, hgt, wid, generator=g)
            t = torch.tensor(c["timestep"], dtype=torch.float32)
            y = torch.tensor(c["labels"], dtype=torch.int64)
            out = run(model, x, t, y)
            again = run(reloaded, x, t, y)
            assert torch.equal(out["sample"], again["sample"]), f"{name}: the saved folder does not reload"
            tensors.update({f"{case}.hidden_states": x, f"{case}.timestep": t, f"{case}.class_labels": y})
            tensors.update({f"{case}.{k}": v for k, v in out.items()})
        meta = {"cases": json.dumps(list(spec["cases"])), "num_layers": str(model.config.num_layers)}
        common.save(f"dit/{name}/io.safetensors", tensors, SCRIPT, meta)

        if spec.get("tie_embedders"):
            odir = os.path.join(OUT, name, "original")
            os.makedirs(odir, exist_ok=True)
            pos = model.pos_embed.pos_embed.detach().clone()
            sd = {k: v.detach() for k, v in model.state_dict().items()}
            orig = diffusers_to_original(sd, pos_embed=pos)
            back = original_to_diffusers(orig)
            assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd), "converter round trip"
            orig = {k: (v if k == "pos_embed" else v.half()).contiguous() for k, v in orig.items()}
            save_file(orig, os.path.join(odir, "DiT-T-2-64x64.safetensors"), metadata={"format": "pt"})
            cfg = dict(model.config)
            cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
            cfg["_class_name"] = "DiTTransformer2DModel"
            with open(os.path.join(odir, "config.json"), "w") as f:
                json.dump(cfg, f, indent=2, sort_keys=True)
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"tests/fixtures/dit: {total / 1024:.0f} KiB in all", file=sys.stderr)


if __name__ == "__main__":
    main()
