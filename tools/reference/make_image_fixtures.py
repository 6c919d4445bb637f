"""Reference values for revelio's image decoding and preprocessing (src/features/image.rs),
from PIL and torchvision: what the Revelio reference pipelines do to every image.

Writes tests/fixtures/images/:
  src/<name>.<ext>        small test images: odd sizes, an upscale, grayscale, RGBA, palette with
                          transparency, 16-bit PNGs, an Adobe CMYK JPEG, RGB and grayscale JPEGs,
                          lossless and lossy WebP
  decoded/<name>.png      PIL's `Image.open(src).convert("RGB")`, saved losslessly
  expected.safetensors    for each image N and resolution R in RESOLUTIONS:
    N.r<R>                f32 [3, R, R]: torchvision Compose([Resize(R), CenterCrop(R), ToTensor(),
                          Normalize([0.5]*3, [0.5]*3)]) of the decoded image (PIL bilinear,
                          antialiased when downscaling)
    N.crop<k>             f32 [3, S, S]: F.resized_crop(img, *CROPS[k][:4], [S, S]) (bilinear),
                          then F.hflip if CROPS[k][4]; the deterministic half of RandomResizedCrop
                          plus RandomHorizontalFlip (revelio draws the parameters from its own RNG)

Pillow must be the reference's: Revelio's environment (SD-kSAE/revelio.yaml) pins pillow 9.5.0,
whose bilinear resize runs the horizontal pass first, as every Pillow up to 12 does; Pillow 13
may run the vertical pass first, which moves some pixels by one level. So:

  pip install --target /tmp/pil95 pillow==9.5.0
  PYTHONPATH=/tmp/pil95 /work/refvenv/bin/python tools/reference/make_image_fixtures.py
"""

import io
import os
import struct
import sys
import zlib

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

OUT = os.path.join(common.FIXTURES, "images")
RESOLUTIONS = (12, 20)
CROP_SIZE = 16
# (top, left, height, width, flip) for the `crop` entries of the two images that get them.
CROPS = {"rgb_odd": [(3, 5, 20, 31, False), (0, 0, 31, 47, True)], "rgb_jpeg": [(4, 2, 25, 19, True)]}


def smooth(rng, h, w, c):
    """A smooth colour field plus some noise: compresses well, exercises every filter tap."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.empty((h, w, c))
    for k in range(c):
        fy, fx, ph = rng.uniform(0.05, 0.4), rng.uniform(0.05, 0.4), rng.uniform(0, 6.3)
        out[..., k] = 128 + 90 * np.sin(fx * x + ph) * np.cos(fy * y - ph)
    out += rng.normal(0, 12, out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def png16(w, h, colour_type, samples):
    """A 16-bit PNG written by hand (PIL cannot write 16-bit RGB): `samples` [h, w*channels]."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in samples)
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def encode(img, fmt, **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def make_images():
    rng = np.random.RandomState(1234)
    files = {}
    files["rgb_odd.png"] = encode(Image.fromarray(smooth(rng, 31, 47, 3)), "PNG")
    files["big_down.png"] = encode(Image.fromarray(smooth(rng, 61, 97, 3)), "PNG")
    files["tiny_up.png"] = encode(Image.fromarray(smooth(rng, 13, 9, 3)), "PNG")
    files["gray.png"] = encode(Image.fromarray(smooth(rng, 40, 29, 1)[..., 0], "L"), "PNG")
    rgba = np.concatenate([smooth(rng, 33, 33, 3), rng.randint(0, 256, (33, 33, 1)).astype(np.uint8)], axis=2)
    files["rgba.png"] = encode(Image.fromarray(rgba, "RGBA"), "PNG")
    pal = Image.fromarray(smooth(rng, 19, 25, 3)).quantize(colors=16)
    files["palette.png"] = encode(pal, "PNG", transparency=3)
    # 16-bit: PIL opens grayscale as I;16 and its convert("RGB") clips at 255; colour keeps the
    # high byte.
    g16 = rng.randint(0, 400, (10, 12)).astype(np.uint16)
    g16[0, :4] = [0, 255, 256, 65535]
    files["gray16.png"] = png16(12, 10, 0, g16)
    files["rgb16.png"] = png16(11, 9, 2, rng.randint(0, 65536, (9, 33)).astype(np.uint16))
    cmyk = Image.fromarray(np.concatenate([smooth(rng, 28, 40, 3), smooth(rng, 28, 40, 1) // 2], axis=2), "CMYK")
    files["cmyk.jpg"] = encode(cmyk, "JPEG", quality=95)
    files["rgb_jpeg.jpg"] = encode(Image.fromarray(smooth(rng, 35, 45, 3)), "JPEG", quality=90)
    files["gray_jpeg.jpg"] = encode(Image.fromarray(smooth(rng, 26, 21, 1)[..., 0], "L"), "JPEG", quality=90)
    files["lossless.webp"] = encode(Image.fromarray(rgba[:22, :30]), "WEBP", lossless=True)
    files["lossy.webp"] = encode(Image.fromarray(smooth(rng, 22, 30, 3)), "WEBP", quality=80)
    return files


def main():
    if int(PIL.__version__.split(".")[0]) >= 13:
        sys.exit(f"Pillow {PIL.__version__}: use the reference's pillow 9.5.0 (see this script's docstring)")
    os.makedirs(os.path.join(OUT, "src"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "decoded"), exist_ok=True)
    tensors = {}
    total = 0
    for fname, data in sorted(make_images().items()):
        name = fname.rsplit(".", 1)[0]
        with open(os.path.join(OUT, "src", fname), "wb") as f:
            f.write(data)
        img = Image.open(io.BytesIO(data)).convert("RGB")
        decoded = encode(img, "PNG")
        with open(os.path.join(OUT, "decoded", name + ".png"), "wb") as f:
            f.write(decoded)
        total += len(data) + len(decoded)
        for r in RESOLUTIONS:
            tf = T.Compose([T.Resize(r), T.CenterCrop(r), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
            tensors[f"{name}.r{r}"] = tf(img)
        for k, (top, left, h, w, flip) in enumerate(CROPS.get(name, [])):
            out = F.resized_crop(img, top, left, h, w, [CROP_SIZE, CROP_SIZE])
            if flip:
                out = F.hflip(out)
            tensors[f"{name}.crop{k}"] = F.normalize(F.to_tensor(out), [0.5] * 3, [0.5] * 3)
    common.save(
        "images/expected.safetensors",
        tensors,
        "make_image_fixtures.py",
        {"torchvision": torchvision.__version__, "pillow": PIL.__version__,
         "crops": repr(CROPS), "crop_size": CROP_SIZE, "resolutions": repr(RESOLUTIONS)},
    )
    print(f"images: {total / 1024:.0f} KiB", file=sys.stderr)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
