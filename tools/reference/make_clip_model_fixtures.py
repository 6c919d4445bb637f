"""Reference values for revelio's CLIPModel (both towers, projections, logit scale:
src/models/clip/) and its image preprocessing, from transformers' CLIPModel and
CLIPImageProcessor on random-weight models with every parameter perturbed.

Writes, for each config C in CONFIGS:
  tests/fixtures/clip_model/C/   a transformers CLIPModel folder: config.json (text_config and
                                 vision_config), model.safetensors, preprocessor_config.json, and
                                 the tiny BPE tokenizer of make_extract_fixtures.py
  tests/fixtures/clip_model/C.safetensors   inputs and expected outputs:
    pixel_values          [N, 3, R, R]  CLIPImageProcessorPil (PIL's bicubic) of IMAGES (RGB arrays)
    input_ids             i64 [P, 77]   the tokenized PROMPTS
    vision.hidden_states.N [N, T, Dv]   T = 1 + (R / patch)^2; 0 = after pre_layrnorm
    vision.pooler_output  [N, Dv]       post_layernorm of the class token
    image_features        [N, E]        visual_projection of the pooled output (unnormalized)
    text_features         [P, E]        text_projection of the text pooled output
    image_embeds          [N, E]        image_features / ||image_features||
    text_embeds           [P, E]
    logits_per_image      [N, P]        logit_scale.exp() * image_embeds text_embeds^T
    best                  i64 [N]       argmax over prompts (what --prompt-from-clip picks)

The configs: a ViT-B/32-like one at a tiny size (image 32, patch 8, quick_gelu, OpenAI CLIP's
legacy eos_token_id 2) and an odd one (head dims 5 and 6, one layer each, gelu, image 30, patch 6,
layer_norm_eps 1e-6, projection 7).

  /work/venv/bin/python tools/reference/make_clip_model_fixtures.py
"""

import json
import os

import numpy as np
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

import common

SCRIPT = "make_clip_model_fixtures.py"
OUT = os.path.join(common.FIXTURES, "clip_model")
IMAGES = ["big_down", "gray", "palette", "rgb_odd", "rgba", "tiny_up"]
# The prompts of tests/extract_clip.rs: the templates there times the classes "cat", "dog".
TEMPLATES = ["a photo of a {}.", "a {} in the dark"]
CLASSES = ["cat", "dog"]
PROMPTS = [t.format(c) for c in CLASSES for t in TEMPLATES]

CONFIGS = {
    "vit_b32_tiny": dict(
        text=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=0, eos_token_id=2,
                  pad_token_id=1),
        vision=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                    image_size=32, patch_size=8, hidden_act="quick_gelu"),
        projection_dim=24, size=32, seed=11,
    ),
    "odd": dict(
        text=dict(hidden_size=12, intermediate_size=10, num_hidden_layers=1, num_attention_heads=2,
                  max_position_embeddings=77, hidden_act="gelu", bos_token_id=0, eos_token_id=2,
                  pad_token_id=1, layer_norm_eps=1e-6),
        vision=dict(hidden_size=20, intermediate_size=9, num_hidden_layers=1, num_attention_heads=4,
                    image_size=30, patch_size=6, hidden_act="gelu", layer_norm_eps=1e-6),
        projection_dim=7, size=30, seed=12,
    ),
}


def main():
    # As arrays of PIL's convert("RGB") (what OpenAI CLIP's preprocess and revelio decode):
    # given a PIL image with a transparency colour (palette.png has one), transformers would
    # composite it over white first.
    images = [np.asarray(Image.open(os.path.join(common.FIXTURES, "images", "decoded", f"{n}.png")).convert("RGB")) for n in IMAGES]
    for name, spec in CONFIGS.items():
        folder = os.path.join(OUT, name)
        vocab_size = common.write_tiny_tokenizer(folder)
        cfg = CLIPConfig(text_config=dict(spec["text"], vocab_size=vocab_size), vision_config=spec["vision"],
                         projection_dim=spec["projection_dim"])
        torch.manual_seed(spec["seed"])
        model = CLIPModel(cfg).eval()
        common.perturb(model, spec["seed"], scale=0.5)
        model.save_pretrained(folder)
        size = spec["size"]
        kw = dict(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        pil = CLIPImageProcessorPil(**kw)
        pil.save_pretrained(folder)
        pixel_values = pil(images=images, return_tensors="pt")["pixel_values"]
        tok = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"))
        ids = torch.tensor(tok(PROMPTS, padding="max_length", max_length=77)["input_ids"])
        with torch.no_grad():
            out = model(input_ids=ids, pixel_values=pixel_values)
            # CLIPModel.forward replaces the towers' pooler_output by its projection: run them alone.
            vis = model.vision_model(pixel_values=pixel_values, output_hidden_states=True)
            image_features = model.visual_projection(vis.pooler_output)
            text_features = model.text_projection(model.text_model(input_ids=ids).pooler_output)
            assert torch.allclose(image_features / image_features.norm(dim=-1, keepdim=True), out.image_embeds, atol=1e-6)
            assert torch.allclose(text_features / text_features.norm(dim=-1, keepdim=True), out.text_embeds, atol=1e-6)
        tensors = {
            "pixel_values": pixel_values,
            "input_ids": ids,
            "vision.pooler_output": vis.pooler_output,
            "image_features": image_features,
            "text_features": text_features,
            "image_embeds": out.image_embeds,
            "text_embeds": out.text_embeds,
            "logits_per_image": out.logits_per_image,
            "best": out.logits_per_image.argmax(-1),
        }
        for i, h in enumerate(vis.hidden_states):
            tensors[f"vision.hidden_states.{i}"] = h
        print(f"{name}: best prompts {[PROMPTS[i] for i in tensors['best'].tolist()]}, "
              f"logit_scale {model.logit_scale.item():.4f}")
        common.save(f"clip_model/{name}.safetensors", tensors, SCRIPT)


if __name__ == "__main__":
    main()
