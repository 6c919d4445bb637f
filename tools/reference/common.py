"""Shared helpers for the fixture scripts in tools/reference/.

Fixtures are small safetensors files under tests/fixtures/ holding inputs, expected outputs and
taps computed by the real implementation (diffusers, transformers) on random-weight models of
the same structure. Every file carries metadata: the format version the Rust tests check, the
script that made it (the hint a stale fixture prints), and the library versions.
"""

import os
import sys

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
