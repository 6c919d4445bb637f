"""Shared helpers for the fixture scripts in tools/reference/.

Fixtures are small safetensors files under tests/fixtures/ holding inputs, expected outputs and
taps computed by the real implementation (diffusers, transformers) on random-weight models of
the same structure. Every file carries metadata: the format version the Rust tests check, the
script that made it (the hint a stale fixture prints), and the library versions.
"""

import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

FORMAT = "revelio-fixture-1"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def versions():
    out = {"torch": torch.__version__}
    for name in ("diffusers", "transformers"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            pass
    return out


def perturb(module, seed, scale=0.05):
    """Moves every parameter away from its default init, deterministically: norm weights off 1,
    biases and zero-initialised outputs off 0, so a forgotten scale, bias or affine term in our
    implementation shows in the outputs. Weights get noise proportional to `scale`."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if p.ndim == 1 and ("norm" in name or name.endswith("weight")):
                p.copy_(p + 0.1 * noise)
            else:
                p.copy_(p + scale * noise)


def save(relpath, tensors, script, extra_meta=None):
    """Writes tensors (all contiguous f32/i64) to tests/fixtures/<relpath> with metadata."""
    path = os.path.join(FIXTURES, relpath)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    meta = {"format": FORMAT, "script": f"tools/reference/{script}", **versions(), **(extra_meta or {})}
    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    save_file(clean, path, metadata={k: str(v) for k, v in meta.items()})
    size = os.path.getsize(path)
    print(f"wrote {os.path.relpath(path, ROOT)} ({len(clean)} tensors, {size / 1024:.0f} KiB)", file=sys.stderr)


# ---- revelio::rng, ported (src/rng.rs) ----
M64 = (1 << 64) - 1


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def bits(seed, i):
    return mix64(seed ^ mix64((i + 0x9E3779B97F4A7C15) & M64))


def normal(seed, i):
    u1 = ((bits(seed, 2 * i) >> 11) + 1.0) * (1.0 / 9_007_199_254_740_993.0)
    u2 = (bits(seed, 2 * i + 1) >> 11) * (1.0 / 9_007_199_254_740_992.0)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def derive(seed, path):
    acc = mix64(seed)
    for p in path:
        acc = mix64(acc ^ mix64((p + 0x632BE59BD9B4E019) & M64))
    return acc


# ---- a tiny CLIP BPE vocabulary ----
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


TINY_MERGES = [("a", "</w>"), ("p", "h"), ("ph", "o"), ("pho", "t"), ("phot", "o</w>"), ("o", "f</w>")]


def write_tiny_tokenizer(folder, merges=TINY_MERGES):
    """A byte-level BPE in CLIP's format (vocab.json, merges.txt and SD 1.x's special tokens)
    with ids small enough for a tiny embedding: every byte, its </w> form, `merges`' results and
    the three special tokens. Returns the vocabulary size."""
    chars = bytes_to_unicode()
    vocab = chars + [c + "</w>" for c in chars]
    vocab += ["".join(m) for m in merges]
    vocab += ["</w>", "<|startoftext|>", "<|endoftext|>"]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump({tok: i for i, tok in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    special = {"content": "<|endoftext|>", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"add_prefix_space": False, "bos_token": dict(special, content="<|startoftext|>"),
                   "do_lower_case": True, "eos_token": special, "errors": "replace", "model_max_length": 77,
                   "pad_token": special, "tokenizer_class": "CLIPTokenizer", "unk_token": special}, f, indent=1)
    with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
        json.dump({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                   "unk_token": "<|endoftext|>"}, f, indent=1)
    return len(vocab)


def normal_tensor(seed, shape):
    """`rng::normal_vec(seed, 0, n)` shaped as `shape` (f32, row-major): revelio's draws."""
    n = int(np.prod(shape))
    return torch.tensor(np.array([normal(seed, k) for k in range(n)], dtype=np.float32).reshape(shape))
