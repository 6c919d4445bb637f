"""Reference values for revelio's CLIP text encoder (src/models/clip/text_model.rs), from
transformers' CLIPTextModel on random-weight models with every parameter perturbed.

Writes, for each config C in CONFIGS:
  tests/fixtures/clip/C/config.json, model.safetensors   the text_encoder/ folder
  tests/fixtures/clip/C.safetensors                        inputs and expected outputs:
    input_ids          i64 [B, S]
    last_hidden_state  [B, S, D]   (after final_layer_norm)
    pooler_output      [B, D]      (the EOS position, as transformers picks it)
    pool_index         i64 [B]     that position, for messages
    hidden_states.N    [B, S, D]   N = 0 (embeddings) .. num_hidden_layers (before final_layer_norm)
    clip_skip.K        [B, S, D]   hidden_states.(L - K) through final_layer_norm (diffusers'
                                   `clip_skip`), for K = 1 .. L - 1

The configs cover: quick_gelu with the legacy eos_token_id 2 (pooled = argmax of input_ids) saved
with the `text_model.` key prefix and the `position_ids` buffer as SD 1.x's text_encoder folders
(and transformers < 5.6) have them; gelu with eos_token_id 500 (pooled = first position of 500,
not the argmax) saved flat as transformers 5.23 writes it; gelu_pytorch_tanh with pad == eos
and a sequence shorter than max_position_embeddings.

  /work/refvenv/bin/python tools/reference/make_clip_fixtures.py
"""

import json
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

import common

SCRIPT = "make_clip_fixtures.py"
OUT = os.path.join(common.FIXTURES, "clip")

CONFIGS = {
    # SD 1.x-like: OpenAI CLIP's quick_gelu, the legacy eos_token_id 2 of SD 1.x's config.json.
    "quick_gelu_legacy": dict(
        config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=4,
                    max_position_embeddings=77, vocab_size=1000, hidden_act="quick_gelu",
                    bos_token_id=0, eos_token_id=2, pad_token_id=1, projection_dim=24),
        prefixed=True, seq=77, seed=1,
    ),
    # SD 2.x-like activation (OpenCLIP's exact gelu) with a post-#24773 eos_token_id.
    "gelu_eos500": dict(
        config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=3, num_attention_heads=4,
                    max_position_embeddings=77, vocab_size=1000, hidden_act="gelu",
                    bos_token_id=998, eos_token_id=500, pad_token_id=0, projection_dim=24,
                    layer_norm_eps=1e-6),
        prefixed=False, seq=77, seed=2,
    ),
    "gelu_tanh_short": dict(
        config=dict(hidden_size=16, intermediate_size=20, num_hidden_layers=2, num_attention_heads=2,
                    max_position_embeddings=77, vocab_size=100, hidden_act="gelu_pytorch_tanh",
                    bos_token_id=6, eos_token_id=7, pad_token_id=7),
        prefixed=False, seq=16, seed=3,
    ),
}


def input_ids(name, cfg, seq, g):
    """Two rows of `seq` ids: a start token, random ids, the EOS token, then padding, with the
    EOS at different positions, chosen so that each config's pooling rule matters."""
    vocab = cfg["vocab_size"]
    bos, eos, pad = cfg["bos_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]
    rows = []
    for r, eos_at in enumerate([min(9, seq - 4), seq - 2]):
        if eos == 2:
            # The legacy rule takes argmax(input_ids): the real EOS (49407) is the largest id, so
            # the EOS stand-in here is the largest id, vocab - 1, with smaller ids before it.
            # Row 0 pads with it (SD 1.x's tokenizer does): the argmax is the first one.
            ids = torch.randint(3, vocab - 1, (seq,), generator=g)
            ids[eos_at:] = vocab - 1 if r == 0 else pad
            ids[eos_at] = vocab - 1
        else:
            ids = torch.randint(3, vocab, (seq,), generator=g)
            ids[ids == eos] = eos + 1
            ids[eos_at] = eos
            ids[eos_at + 1:] = pad
            if name == "gelu_eos500":
                # A larger id than the EOS after it, and a second EOS: the first EOS must win.
                ids[eos_at + 1] = vocab - 1
                if r == 0:
                    ids[eos_at + 3] = eos
        ids[0] = bos
        rows.append(ids)
    return torch.stack(rows)


def main():
    for name, spec in CONFIGS.items():
        cfg = spec["config"]
        torch.manual_seed(spec["seed"])
        model = CLIPTextModel(CLIPTextConfig(**cfg)).eval()
        common.perturb(model, spec["seed"])
        folder = os.path.join(OUT, name)
        os.makedirs(folder, exist_ok=True)
        model.save_pretrained(folder)
        if spec["prefixed"]:
            # SD 1.x's text_encoder/model.safetensors: `text_model.` keys and the position_ids buffer.
            sd = {f"text_model.{k}": v.contiguous() for k, v in model.state_dict().items()}
            sd["text_model.embeddings.position_ids"] = torch.arange(cfg["max_position_embeddings"])[None]
            save_file(sd, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
            reloaded = CLIPTextModel.from_pretrained(folder).eval()
            for k, v in model.state_dict().items():
                assert torch.equal(v, reloaded.state_dict()[k]), f"{name}: prefixed file reloads {k} differently"
        with open(os.path.join(folder, "config.json")) as f:
            config_json = json.load(f)

        g = torch.Generator().manual_seed(100 + spec["seed"])
        ids = input_ids(name, cfg, spec["seq"], g)
        with torch.no_grad():
            out = model(input_ids=ids, output_hidden_states=True)
        hs = out.hidden_states
        layers = cfg["num_hidden_layers"]
        assert len(hs) == layers + 1
        with torch.no_grad():
            assert torch.allclose(model.final_layer_norm(hs[-1]), out.last_hidden_state, atol=1e-6)
            if cfg["eos_token_id"] == 2:
                pool_index = ids.argmax(-1)
            else:
                pool_index = (ids == cfg["eos_token_id"]).int().argmax(-1)
            assert torch.equal(out.pooler_output, out.last_hidden_state[torch.arange(ids.shape[0]), pool_index])
            tensors = {
                "input_ids": ids,
                "last_hidden_state": out.last_hidden_state,
                "pooler_output": out.pooler_output,
                "pool_index": pool_index,
            }
            for i, h in enumerate(hs):
                tensors[f"hidden_states.{i}"] = h
            for k in range(1, layers):
                # diffusers' StableDiffusionPipeline.encode_prompt with clip_skip = k.
                tensors[f"clip_skip.{k}"] = model.final_layer_norm(hs[-(k + 1)])
        print(f"{name}: hidden_act {config_json['hidden_act']}, eos {config_json['eos_token_id']}, "
              f"pool_index {pool_index.tolist()}")
        common.save(f"clip/{name}.safetensors", tensors, SCRIPT)


if __name__ == "__main__":
    main()
