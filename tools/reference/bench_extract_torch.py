#!/usr/bin/env python3
"""Extraction throughput, revelio against diffusers, in one run (issue 6): SD 1.5 at 512 px with
random weights, mean-pooled features of the taps mid, up.0, up.1, up.2 at one timestep for every
image of a JPEG ImageFolder, images/s from decode to features on the host.

Four steps, each adding its record to OUT_DIR/bench_extract.json (merged, so one JSON ends up
holding every figure and the speed-ups):

  --make OUT_DIR [--images N] [--tiny]
      OUT_DIR/pipeline/: a diffusers SD 1.5 pipeline folder with seeded random weights, every
      config embedded here (nothing is downloaded): unet/ (bench_unet_torch.py's SD15 config and
      weights), vae/ (SD's AutoencoderKL, scaling_factor 0.18215), text_encoder/ (SD 1.5's
      CLIPTextModel: 12 layers of 768, quick_gelu), tokenizer/ (a minimal CLIP byte-level BPE:
      the 512 byte symbols, a few merges, the start and end tokens; the empty prompt needs no
      more), scheduler/ (SD 1.5's schedule as a DDIMScheduler config), model_index.json. Every
      parameter is moved off its init (bench_unet_torch.perturb) and rounded through bf16, then
      stored in bf16, so a bf16 load and an f32 load see the same values.
      OUT_DIR/data/: an ImageFolder of N (default 512) JPEGs, 400-700 px a side, of seeded
      random shapes on textured gradients, in 4 class folders.
      --tiny: the same layouts, small (bench_unet_torch's sd15-tiny U-Net, a 4-level VAE of
      16/32 channels, a 2-layer CLIP of 32, 128 px, images 96-200 px): a CPU smoke test.

  --run-revelio OUT_DIR [--revelio-bin PATH] [--revelio-runs 2]
      `revelio extract --model OUT_DIR/pipeline --data OUT_DIR/data --out OUT_DIR/store
      --layers mid,up.0,up.1,up.2 --timesteps 25 --resolution R --pooling mean --dtype f32
      --model-dtype bf16 --batch-size B --workers W --device cuda --seed 0`, --revelio-runs
      times in a row into a fresh store each time (extract resumes: a finished store would time
      nothing); the first run, which compiles the kernels with NVRTC (cached on disk) and reads
      the weights cold, is the warm-up, as the torch runs' first batch. Records the last run's
      summary: `images_per_s` (revelio's own figure, from its start: model load and probe
      included), `images_per_s_loop` (images over its VAE + U-Net + write time: the loop alone,
      the counterpart of the torch figures below), the wall time of the whole command.

  --run OUT_DIR --mode reference|tuned
      The same job through diffusers and transformers. Decode, resize (short side to R, PIL's
      bilinear as torchvision's Resize), center crop, [-1, 1] happen in a torch DataLoader
      (--workers processes), which also draws each image's noise: revelio's own stream
      (rng::derive(seed, [i, t, 0]), ported below, vectorised), so both sides see the same
      x_t and --compare can compare features directly. Then VAE posterior mean x
      scaling_factor, DDPMScheduler.add_noise at t, the U-Net with the empty prompt's CLIP
      last_hidden_state, the taps read by forward hooks and mean-pooled over h, w.
        reference: the Revelio reference's way (shared/spec/revelio.md sections 0-1): f32
          everywhere with torch's default TF32 settings, the full U-Net forward with hooks,
          diffusers' default attention processor (AttnProcessor2_0 where torch has SDPA, as
          in the reference's torch 2.4), ToTensor/Normalize on the host.
        tuned: bf16 weights and activations (--dtype), SDPA (AttnProcessor2_0) set
          explicitly, channels_last (--no-channels-last to compare), cudnn.benchmark,
          inference_mode, the forward ended after the deepest tap (bench_unet_torch's hook
          raising its _Stop), uint8 pixels in pinned memory, normalised on the device.
      The first batch is a warm-up (cuDNN autotuning, workers starting); the loop after it is
      timed with time.perf_counter, with a device sync after the VAE so the split is real:
      data wait (blocked on the loader), VAE (host-to-device copy + encode), U-Net (noise,
      add_noise, forward, pooled features to the host). Features go to
      OUT_DIR/torch_<mode>.safetensors ([N, C] per tap, f32; the image paths in the metadata).

  --compare OUT_DIR [--store STORE]
      Reads revelio's store (manifest.json and its safetensors shards, tensors `<layer>/t<t>`)
      and every torch_<mode>.safetensors, matches images by path, and records per tap the
      cosine similarity averaged over images, the same after centring each side on its mean
      over images (what the pooled features vary by), the ratio of the norms, and the
      relative L2 / max |diff| (bench_unet_torch.errors). The noise is the same on both sides,
      so the features agree closely: up to the JPEG decoders (revelio decodes with zune-jpeg,
      PIL with libjpeg-turbo: a few levels on some pixels, tests/image.rs), which leaves a
      relative L2 of a few 1e-3 in f32 (the CPU smoke test: cosine > 0.9999; on PNGs the
      latents agree to ~1e-6), plus bf16's own error for a bf16 run (tuned-vs-reference is
      recorded beside it as that baseline). Exact parity is tested elsewhere (tests/extract.rs
      against make_extract_fixtures.py); this check guards the benchmark against timing a
      different job (wrong model folder, tap, scaling factor or preprocessing).

The JSON's `speedup` section: revelio's loop figure over each torch figure (and revelio's
whole-command figure over them); the target is >= 2x `tuned`.

On the GPU machine (PyTorch, transformers, Pillow, safetensors there; diffusers not: carry its
wheel, pure Python; and a stripped revelio, the release binary with line tables being ~75 MB).
Here, once, from the repository root (`.whl` and `target/` are git-ignored):

    python3 -m pip download --no-deps --only-binary=:all: -d .whl diffusers==0.42.1
    mkdir -p target/device && strip -o target/device/revelio target/release/revelio

then one call on the device, carrying `.whl` and `target/device` (about 5 minutes; 2048 images
rather than the default 512 because revelio prints its times to 0.1 s, and so that its model
load weighs less in its whole-command figure):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/diffusers-*.whl \
      && export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 || exit
    S=tools/reference/bench_extract_torch.py X=/tmp/xb
    python3 $S --make $X --images 2048 \
      && python3 $S --run-revelio $X --revelio-bin target/device/revelio \
      && python3 $S --run $X --mode reference \
      && python3 $S --run $X --mode tuned \
      && python3 $S --compare $X
    cp $X/bench_extract.json $OUT/

(--resolution defaults to the pipeline's VAE sample_size, 512; --timestep 25, --batch 8,
--workers 8, --device cuda, --dtype bf16 for tuned and revelio.)

Smoke test without a GPU (tiny models at 128 px, 24 images; on the CPU `tuned` runs in f32 by
default, --dtype bf16 also works there; revelio-vs-torch cosine > 0.9999, relative L2 1e-3 to
5e-3 from the JPEG decoders):

    P=/work/refvenv/bin/python S=tools/reference/bench_extract_torch.py X=/tmp/xb
    $P $S --make $X --tiny --images 24
    $P $S --run-revelio $X --device cpu
    $P $S --run $X --mode reference --device cpu
    $P $S --run $X --mode tuned --device cpu
    $P $S --compare $X
"""

import argparse
import json
import math
import os
import re
import shutil
import sys
import time

import numpy as np
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_unet_torch as ub  # noqa: E402
from benchlib import errors, perturb, round_bf16, run_revelio  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JSON = "bench_extract.json"
TAPS = "mid,up.0,up.1,up.2"

# SD 1.5's vae/config.json (runwayml/stable-diffusion-v1-5; the rest are diffusers' defaults).
VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
           up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
           act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=512, scaling_factor=0.18215)
# SD 1.5's text_encoder/config.json (openai/clip-vit-large-patch14's text tower; bos/eos/pad ids 0/2/1 as
# that config has them, which only picks the pooled output, unused here).
CLIP = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, projection_dim=768, num_hidden_layers=12,
            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
            attention_dropout=0.0, dropout=0.0, initializer_factor=1.0, initializer_range=0.02, bos_token_id=0,
            eos_token_id=2, pad_token_id=1)
# SD 1.5's schedule (its scheduler is a PNDMScheduler config; Diff-C loads it as DDIM, SD-kSAE as DDPM:
# add_noise is the same in all three).
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon")
FULL = {"unet": ub.SD15, "vae": VAE, "clip": CLIP, "sides": (400, 700)}
# 128 px: 16x16 latents, as bench_unet_torch's tiny U-Net (2x2 at the mid block).
TINY = {"unet": ub.TINY_CONFIGS["sd15-tiny"],
        "vae": dict(VAE, block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=8, sample_size=128),
        "clip": dict(CLIP, hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=2,
                     num_attention_heads=2),
        "sides": (96, 200)}
CLASSES = ("ellipses", "rectangles", "triangles", "lines")


# ---- the pipeline folder ----
def save_bf16(model, path):
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}, path,
              metadata={"format": "pt"})


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")


def byte_symbols():
    """The 256 characters CLIP's byte-level BPE spells bytes with, in its vocabulary's order:
    the printable Latin-1 bytes as themselves, then the rest mapped to 256, 257, ..."""
    printable = [b for b in range(256) if 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF]
    rest = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + k) for k in range(len(rest))]


def write_tokenizer(folder, words=("a", "photo", "of")):
    """A valid CLIP tokenizer folder (vocab.json, merges.txt, tokenizer_config.json,
    special_tokens_map.json): the byte symbols with and without `</w>`, merges spelling `words`
    whole, then <|startoftext|> and <|endoftext|> (also the pad token, as SD 1.5's)."""
    syms = byte_symbols()
    vocab = syms + [s + "</w>" for s in syms]
    merges = []
    for w in words:
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        acc = parts[0]
        for p in parts[1:]:
            if acc + p not in vocab:
                merges.append((acc, p))
                vocab.append(acc + p)
            acc += p
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    write_json(os.path.join(folder, "vocab.json"), {t: i for i, t in enumerate(vocab)})
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    token = dict(content="<|endoftext|>", lstrip=False, normalized=True, rstrip=False, single_word=False)
    write_json(os.path.join(folder, "tokenizer_config.json"), {
        "add_prefix_space": False, "bos_token": dict(token, content="<|startoftext|>"), "do_lower_case": True,
        "eos_token": token, "errors": "replace", "model_max_length": 77, "pad_token": token,
        "tokenizer_class": "CLIPTokenizer", "unk_token": token})
    write_json(os.path.join(folder, "special_tokens_map.json"), {
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>"})


def make_pipeline(folder, sizes):
    import diffusers
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    t0 = time.perf_counter()
    unet = ub.build(sizes["unet"], 1)  # perturbed, rounded through bf16
    unet.save_config(os.path.join(folder, "unet"))
    save_bf16(unet, os.path.join(folder, "unet", "diffusion_pytorch_model.safetensors"))
    counts = {"unet": sum(p.numel() for p in unet.parameters())}
    del unet

    torch.manual_seed(2)
    vae = AutoencoderKL(**sizes["vae"]).eval()
    round_bf16(perturb(vae, 2, scale=0.02, vector_scale=0.1))
    vae.save_config(os.path.join(folder, "vae"))
    save_bf16(vae, os.path.join(folder, "vae", "diffusion_pytorch_model.safetensors"))
    counts["vae"] = sum(p.numel() for p in vae.parameters())
    del vae

    torch.manual_seed(3)
    config = CLIPTextConfig(**sizes["clip"])
    config.architectures = ["CLIPTextModel"]
    text = CLIPTextModel(config).eval()
    round_bf16(perturb(text, 3, scale=0.02, vector_scale=0.1))
    config.save_pretrained(os.path.join(folder, "text_encoder"))
    save_bf16(text, os.path.join(folder, "text_encoder", "model.safetensors"))
    counts["text_encoder"] = sum(p.numel() for p in text.parameters())
    del text

    write_tokenizer(os.path.join(folder, "tokenizer"))
    DDIMScheduler(**SCHEDULER).save_config(os.path.join(folder, "scheduler"))
    write_json(os.path.join(folder, "model_index.json"), {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
        "_note": "bench_extract_torch.py: SD 1.5's configs, seeded random weights",
        "feature_extractor": [None, None], "requires_safety_checker": False, "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]})
    print(f"pipeline: {folder} ({', '.join(f'{k} {v / 1e6:.1f}M' for k, v in counts.items())} parameters, "
          f"{time.perf_counter() - t0:.0f} s)", file=sys.stderr)


# ---- the images ----
def draw_image(rng, kind, sides):
    """A JPEG-worthy picture: a textured two-colour gradient and 3-9 shapes of the class's kind."""
    from PIL import Image, ImageDraw

    w, h = (int(v) for v in rng.integers(sides[0], sides[1] + 1, 2))
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    s = (xx * math.cos(angle) + yy * math.sin(angle)) / max(w, h)
    s = (s - s.min()) / max(float(np.ptp(s)), 1e-6)
    pixels = a * (1 - s[..., None]) + b * s[..., None] + rng.normal(0, 12, (h, w, 3))
    img = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 10))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = rng.uniform(-0.1, 0.9) * w, rng.uniform(-0.1, 0.9) * h
        x1, y1 = x0 + rng.uniform(0.1, 0.5) * w, y0 + rng.uniform(0.1, 0.5) * h
        if kind == "ellipses":
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == "rectangles":
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif kind == "triangles":
            draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=max(2, int(rng.integers(2, 12)) * min(w, h) // 400))
    return img


def make_data(folder, n, sides, seed=0):
    rng = np.random.default_rng(seed)
    for k in range(n):
        kind = CLASSES[k % len(CLASSES)]
        os.makedirs(os.path.join(folder, kind), exist_ok=True)
        draw_image(rng, kind, sides).save(os.path.join(folder, kind, f"img_{k:05d}.jpg"), quality=90)
    print(f"data: {folder} ({n} JPEGs in {len(CLASSES)} classes, {sides[0]}-{sides[1]} px a side)", file=sys.stderr)


def image_folder(root):
    """The images of an ImageFolder in torchvision's order (classes sorted, files sorted), which
    is revelio's dataset order too: (path relative to root, label)."""
    ext = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    out = []
    for label, c in enumerate(classes):
        for d, _, files in sorted(os.walk(os.path.join(root, c), followlinks=True)):
            out += [(os.path.relpath(os.path.join(d, f), root), label) for f in sorted(files) if f.lower().endswith(ext)]
    return out


# ---- revelio's noise (src/rng.rs), vectorised over counters ----
M64 = (1 << 64) - 1


def mix64_int(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def derive(seed, path):
    acc = mix64_int(seed)
    for p in path:
        acc = mix64_int(acc ^ mix64_int((p + 0x632BE59BD9B4E019) & M64))
    return acc


def mix64(z):
    # uint64 arrays wrap on overflow, as Rust's wrapping_mul
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def normals(seed, n):
    """rng::normal_vec(seed, 0, n): Box-Muller on counters 2i, 2i+1, in f64, rounded to f32."""
    i = np.arange(2 * n, dtype=np.uint64)
    b = mix64(np.uint64(seed) ^ mix64(i + np.uint64(0x9E3779B97F4A7C15)))
    u1 = ((b[0::2] >> np.uint64(11)).astype(np.float64) + 1.0) * (1.0 / 9_007_199_254_740_993.0)
    u2 = (b[1::2] >> np.uint64(11)).astype(np.float64) * (1.0 / 9_007_199_254_740_992.0)
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(math.tau * u2)).astype(np.float32)


def noise(seed, i, t, shape):
    """The noise revelio adds to image i at timestep t (draw 0): [L, h, w] in CHW order."""
    return torch.from_numpy(normals(derive(seed, [i, t, 0]), int(np.prod(shape))).reshape(shape))


# ---- the torch extraction ----
class Images(torch.utils.data.Dataset):
    """Decode, Resize(R) (short side to R, long side int(R * long / short), PIL bilinear) and
    CenterCrop(R) as torchvision does them on PIL images; then either ToTensor + Normalize(0.5,
    0.5) here (`normalise`: the reference) or uint8 CHW for the device to normalise; and the
    image's noise."""

    def __init__(self, root, items, resolution, timestep, seed, latent_shape, normalise):
        self.root, self.items, self.r, self.t, self.seed = root, items, resolution, timestep, seed
        self.latent_shape, self.normalise = latent_shape, normalise

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image

        r = self.r
        with Image.open(os.path.join(self.root, self.items[i][0])) as im:
            img = im.convert("RGB")
        w, h = img.size
        if w <= h:
            size = (r, int(r * h / w))
        else:
            size = (int(r * w / h), r)
        img = img.resize(size, Image.BILINEAR)
        top, left = int(round((size[1] - r) / 2.0)), int(round((size[0] - r) / 2.0))
        img = img.crop((left, top, left + r, top + r))
        x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()
        if self.normalise:
            x = (x.float() / 255.0 - 0.5) / 0.5
        return x, noise(self.seed, i, self.t, self.latent_shape), i


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def load_models(pipe, dev, dtype, tuned, channels_last):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor2_0
    from transformers import CLIPTextModel, CLIPTokenizer

    unet = UNet2DConditionModel.from_pretrained(os.path.join(pipe, "unet"), torch_dtype=dtype).eval().to(dev)
    vae = AutoencoderKL.from_pretrained(os.path.join(pipe, "vae"), torch_dtype=dtype).eval().to(dev)
    if tuned:
        unet.set_attn_processor(AttnProcessor2_0())
        vae.set_attn_processor(AttnProcessor2_0())
        if channels_last:
            unet.to(memory_format=torch.channels_last)
            vae.to(memory_format=torch.channels_last)
    # The empty prompt's states: once, in f32 (the reference's precision), then the run dtype.
    tok = CLIPTokenizer.from_pretrained(os.path.join(pipe, "tokenizer"))
    text = CLIPTextModel.from_pretrained(os.path.join(pipe, "text_encoder")).eval().float().to(dev)
    ids = tok([""], padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt")
    with torch.no_grad():
        ctx = text(ids.input_ids.to(dev))[0].to(dtype)
    del text
    sched = DDPMScheduler.from_pretrained(os.path.join(pipe, "scheduler"))
    return unet, vae, ctx, sched


def run_torch(args):
    import diffusers

    tuned = args.mode == "tuned"
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA GPU here (--device cpu for a smoke test)")
    dname = args.dtype if tuned else "f32"
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[dname]
    channels_last = tuned and args.channels_last
    if tuned:
        torch.backends.cudnn.benchmark = True
    pipe, data = os.path.join(args.out_dir, "pipeline"), os.path.join(args.out_dir, "data")
    taps = args.layers.split(",")
    order = ub.tap_names(json.load(open(os.path.join(pipe, "unet", "config.json"))))
    if any(t not in order for t in taps):
        sys.exit(f"--layers {args.layers}: taps are {', '.join(order)}")
    deepest = max(taps, key=order.index)

    unet, vae, ctx, sched = load_models(pipe, dev, dtype, tuned, channels_last)
    sf = vae.config.scaling_factor
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latent_shape = (vae.config.latent_channels, args.resolution // factor, args.resolution // factor)
    items = image_folder(data)
    ds = Images(data, items, args.resolution, args.timestep, args.seed, latent_shape, normalise=not tuned)
    pin = tuned and dev.type == "cuda"
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=False, num_workers=args.workers,
                                         pin_memory=pin)
    rec = {}
    # Tuned: the hooks on every tap but the deepest one last; that one records, then ends the forward.
    hooks = ub.record(unet, [t for t in taps if t != deepest] + [deepest], rec, stop=tuned)
    n = len(items)
    feats = {}
    t_vec = {}
    split = {"data_wait_s": 0.0, "vae_s": 0.0, "unet_s": 0.0}
    grad = torch.inference_mode() if tuned else torch.no_grad()
    it = iter(loader)
    k = 0
    warm = {}
    with grad:
        t_start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            try:
                x, eps, idx = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            b = x.shape[0]
            x = x.to(dev, non_blocking=pin)
            if tuned:
                x = (x.float() / 127.5 - 1.0).to(dtype)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                lat = vae.encode(x).latent_dist.mean * sf
            else:
                lat = vae.encode(x).latent_dist.mode() * sf
            sync(dev)
            t2 = time.perf_counter()
            if b not in t_vec:
                t_vec[b] = torch.full((b,), args.timestep, dtype=torch.long, device=dev)
            xt = sched.add_noise(lat, eps.to(dev, dtype, non_blocking=pin), t_vec[b])
            if channels_last:
                xt = xt.contiguous(memory_format=torch.channels_last)
            rec.clear()
            try:
                unet(xt, t_vec[b], encoder_hidden_states=ctx.expand(b, -1, -1))
            except ub._Stop:
                pass
            pooled = torch.cat([torch.mean(rec[t], dim=(2, 3), dtype=torch.float32) for t in taps], 1).cpu()
            t3 = time.perf_counter()
            for t, v in zip(taps, pooled.split([rec[t].shape[1] for t in taps], 1)):
                feats.setdefault(t, torch.zeros(n, v.shape[1]))[idx] = v
            if k == 0:
                # the warm-up batch: not timed
                warm = {"warmup_s": t3 - t_start, "latent_std": lat.float().std().item(),
                        "latent_shape": list(lat.shape[1:])}
                if dev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                t_loop, timed = time.perf_counter(), 0
            else:
                split["data_wait_s"] += t1 - t0
                split["vae_s"] += t2 - t1
                split["unet_s"] += t3 - t2
                timed += b
            k += 1
        wall = time.perf_counter() - t_loop if k > 1 else float("nan")
    for h in hooks:
        h.remove()

    meta = {"mode": args.mode, "dtype": dname, "timestep": str(args.timestep), "resolution": str(args.resolution),
            "seed": str(args.seed), "paths": json.dumps([p for p, _ in items])}
    save_file({t: v.contiguous() for t, v in feats.items()}, os.path.join(args.out_dir, f"torch_{args.mode}.safetensors"),
              metadata=meta)
    row = {"what": ("diffusers, the reference's way: f32, full U-Net forward with hooks, default attention processor"
                    if not tuned else f"diffusers tuned: {dname}, SDPA, "
                    f"{'channels_last, ' if channels_last else ''}forward ended after {deepest}, pinned uint8 input"),
           "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
           "torch": torch.__version__, "diffusers": diffusers.__version__,
           "transformers": __import__("transformers").__version__,
           "images": n, "timed_images": timed if k > 1 else 0, "batch": args.batch, "workers": args.workers,
           "resolution": args.resolution, "timestep": args.timestep, "taps": taps, "pooling": "mean",
           "dtype": dname, "attention": sorted({type(p).__name__ for p in unet.attn_processors.values()}),
           "channels_last": channels_last, "stopped_after": deepest if tuned else None, "pin_memory": pin,
           "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
           "cudnn_benchmark": torch.backends.cudnn.benchmark,
           "wall_s": wall, "images_per_s": (timed / wall) if k > 1 else None,
           **split, **{f"{name[:-2]}_ms_per_image": 1e3 * v / max(timed, 1) for name, v in split.items()}, **warm}
    if dev.type == "cuda":
        row["peak_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    print(json.dumps(row), file=sys.stderr)
    update(args.out_dir, {f"torch_{args.mode}": row})


# ---- revelio ----
SUMMARY = re.compile(r"extract: (\d+) images in ([\d.]+) s \(([\d.]+) img/s\)")
TIMES = re.compile(r"time: decode ([\d.]+) s on the pool \(the model waited ([\d.]+) s for it\), "
                   r"VAE ([\d.]+) s, (\S+) ([\d.]+) s, write ([\d.]+) s")


def revelio_once(cmd, store, env):
    """One `revelio extract` into a fresh store: its summary lines, parsed, and the wall time."""
    if os.path.exists(store):
        shutil.rmtree(store)
    m, tm, wall = run_revelio(cmd, env, "extract", SUMMARY, TIMES)
    images, elapsed, rate = int(m.group(1)), float(m.group(2)), float(m.group(3))
    decode, waited, vae, model, write = (float(tm.group(i)) for i in (1, 2, 3, 5, 6))
    loop = vae + model + write
    return {"images": images, "images_per_s": rate, "elapsed_s": elapsed,
            "images_per_s_loop": images / loop if loop > 0 else None, "loop_s": loop,
            "load_and_probe_s": elapsed - loop, "wall_s": wall, "images_per_s_wall": images / wall,
            "decode_s": decode, "decode_wait_s": waited, "vae_s": vae,
            f"{tm.group(4).lower().replace('-', '')}_s": model, "write_s": write}


def run_revelio(args):
    import site

    store = os.path.join(args.out_dir, "store")
    dname = args.dtype if args.device != "cpu" else "f32"
    cmd = [args.revelio_bin, "extract", "--model", os.path.join(args.out_dir, "pipeline"),
           "--data", os.path.join(args.out_dir, "data"), "--out", store, "--layers", args.layers,
           "--timesteps", str(args.timestep), "--resolution", str(args.resolution), "--pooling", "mean",
           "--dtype", "f32", "--model-dtype", dname, "--batch-size", str(args.batch),
           "--workers", str(args.workers), "--device", args.device, "--seed", str(args.seed)]
    # NVRTC and cuBLAS: revelio also looks in the pip wheels of this Python (torch's).
    env = dict(os.environ)
    env.setdefault("REVELIO_PY_SITE", os.pathsep.join(site.getsitepackages()))
    print(" ".join(cmd), file=sys.stderr)
    # The first run compiles the kernels (NVRTC, cached on disk) and reads the weights cold: a
    # warm-up, as the torch runs' first batch; the last run is the figure.
    runs = [revelio_once(cmd, store, env) for _ in range(args.revelio_runs)]
    row = {"command": " ".join(cmd), "batch": args.batch, "workers": args.workers, "resolution": args.resolution,
           "timestep": args.timestep, "taps": args.layers.split(","), "pooling": "mean", "dtype": dname,
           "device_flag": args.device,
           "device": torch.cuda.get_device_name(0) if args.device != "cpu" and torch.cuda.is_available() else "cpu",
           **runs[-1],
           "earlier_runs": [{k: r[k] for k in ("images_per_s", "images_per_s_loop", "wall_s")} for r in runs[:-1]],
           "note": "the last of --revelio-runs runs (the first compiles the kernels); images_per_s: revelio's "
                   "summary, from its start (model load and probe included); images_per_s_loop: images / "
                   "(VAE + U-Net + write), the loop alone; revelio prints times to 0.1 s"}
    update(args.out_dir, {"revelio": row})


# ---- comparison ----
def read_store(store, timestep, taps):
    with open(os.path.join(store, "manifest.json")) as f:
        man = json.load(f)
    shards = sorted(man["shards"], key=lambda s: s["start"])
    out = {}
    for t in taps:
        parts = [load_file(os.path.join(store, s["file"]))[f"{t}/t{timestep}"].float() for s in shards]
        out[t] = torch.cat(parts)
    return man, out


def suffix_key(path, data_root):
    p = os.path.normpath(path)
    root = os.path.normpath(os.path.abspath(data_root))
    if os.path.isabs(p) and p.startswith(root + os.sep):
        p = p[len(root) + 1:]
    return p


def agreement(a, b):
    """Per-tap agreement of [N, C] features a (actual) with b (expected)."""
    a, b = a.double(), b.double()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
    ac, bc = a - a.mean(0), b - b.mean(0)
    ccos = torch.nn.functional.cosine_similarity(ac, bc, dim=1)
    err = errors({"x": a}, {"x": b})["x"]
    return {"cosine_mean": cos.mean().item(), "cosine_min": cos.min().item(),
            "centered_cosine_mean": ccos.mean().item(), "norm_ratio": (a.norm() / b.norm()).item(), **err}


def compare(args):
    store = args.store or os.path.join(args.out_dir, "store")
    data = os.path.join(args.out_dir, "data")
    torch_runs = {}
    for mode in ("reference", "tuned"):
        path = os.path.join(args.out_dir, f"torch_{mode}.safetensors")
        if os.path.exists(path):
            from safetensors import safe_open

            with safe_open(path, "pt") as f:
                meta = f.metadata()
            torch_runs[mode] = (load_file(path), meta)
    if not torch_runs:
        sys.exit(f"no torch_<mode>.safetensors in {args.out_dir}: --run first")
    res = {}
    if os.path.exists(os.path.join(store, "manifest.json")):
        some = next(iter(torch_runs.values()))
        taps, t = list(some[0]), int(some[1]["timestep"])
        man, ours = read_store(store, t, taps)
        ours_paths = [suffix_key(e["path"], data) for e in man["images"]]
        for mode, (feats, meta) in torch_runs.items():
            paths = json.loads(meta["paths"])
            where = {p: i for i, p in enumerate(ours_paths)}
            missing = [p for p in paths if p not in where]
            if missing:
                sys.exit(f"{len(missing)} torch images are not in the store (first: {missing[0]}); "
                         f"store paths look like {ours_paths[0]}")
            if int(meta["timestep"]) != t or int(meta["resolution"]) != man["settings"].get("resolution", -1):
                print(f"warning: torch_{mode} ran at t={meta['timestep']}, {meta['resolution']} px; the store at "
                      f"t={t}, {man['settings'].get('resolution')} px", file=sys.stderr)
            order = torch.tensor([where[p] for p in paths])
            res[f"revelio_vs_torch_{mode}"] = {tap: agreement(ours[tap][order], feats[tap]) for tap in taps}
    else:
        print(f"{store}/manifest.json not found: --run-revelio first to compare with revelio", file=sys.stderr)
    if len(torch_runs) == 2:
        (ref, _), (tun, _) = torch_runs["reference"], torch_runs["tuned"]
        res["torch_tuned_vs_torch_reference"] = {tap: agreement(tun[tap], ref[tap]) for tap in ref}
    for name, taps in res.items():
        print(name, file=sys.stderr)
        for tap, v in taps.items():
            print(f"  {tap:5s} cosine {v['cosine_mean']:.6f} (min {v['cosine_min']:.6f}), centred "
                  f"{v['centered_cosine_mean']:.6f}, norm ratio {v['norm_ratio']:.6f}, rel L2 {v['rel_l2']:.2e}",
                  file=sys.stderr)
    update(args.out_dir, {"compare": res})


# ---- the JSON ----
def update(out_dir, records):
    path = os.path.join(out_dir, JSON)
    results = {}
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    results.update(records)
    rev = results.get("revelio")
    speed = {"target_vs_tuned": 2.0}
    same = ("images", "batch", "resolution", "timestep", "taps")
    for mode in ("reference", "tuned"):
        row = results.get(f"torch_{mode}")
        if not (rev and row and row.get("images_per_s")):
            continue
        diff = [k for k in same if rev.get(k) != row.get(k)]
        if rev.get("device") != row.get("device"):
            diff.append("device")
        if rev.get("images_per_s_loop"):
            speed[f"revelio_vs_{mode}"] = rev["images_per_s_loop"] / row["images_per_s"]
        speed[f"revelio_whole_command_vs_{mode}"] = rev["images_per_s"] / row["images_per_s"]
        if diff:
            speed[f"{mode}_differs_in"] = diff
    if "revelio_vs_tuned" in speed:
        speed["target_met"] = speed["revelio_vs_tuned"] >= speed["target_vs_tuned"]
    results["speedup"] = speed
    write_json(path, results)
    print(f"wrote {path}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--make", metavar="OUT_DIR", help="write OUT_DIR/pipeline and OUT_DIR/data")
    what.add_argument("--run", metavar="OUT_DIR", help="extract with diffusers (--mode)")
    what.add_argument("--run-revelio", metavar="OUT_DIR", help="extract with revelio (--revelio-bin)")
    what.add_argument("--compare", metavar="OUT_DIR", help="compare revelio's store with the torch features")
    ap.add_argument("--images", type=int, default=512, help="--make: how many images")
    ap.add_argument("--tiny", action="store_true", help="--make: tiny models and images (a CPU smoke test)")
    ap.add_argument("--mode", choices=["reference", "tuned"], help="--run: which diffusers way")
    ap.add_argument("--resolution", type=int, help="default: the pipeline's VAE sample_size (512; 128 with --tiny)")
    ap.add_argument("--timestep", type=int, default=25)
    ap.add_argument("--layers", default=TAPS, help=f"taps (default {TAPS})")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=8, help="DataLoader workers; revelio's --workers")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--dtype", choices=["bf16", "f16", "f32"],
                    help="tuned's and revelio's model dtype: default bf16 on cuda, f32 on cpu (reference: f32)")
    ap.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                    help="tuned: keep the default memory format")
    ap.add_argument("--seed", type=int, default=0, help="the noise seed (revelio's --seed)")
    ap.add_argument("--revelio-bin", default=os.path.join(ROOT, "target", "release", "revelio"))
    ap.add_argument("--revelio-runs", type=int, default=2,
                    help="--run-revelio: runs in a row, the last recorded (the first is a warm-up)")
    ap.add_argument("--store", help="--compare: revelio's store (default OUT_DIR/store)")
    args = ap.parse_args()
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "f32")

    if args.make:
        sizes = TINY if args.tiny else FULL
        # New inputs make every earlier result of this folder stale.
        for name in ("pipeline", "data", "store", JSON, "torch_reference.safetensors", "torch_tuned.safetensors"):
            path = os.path.join(args.make, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
        make_pipeline(os.path.join(args.make, "pipeline"), sizes)
        make_data(os.path.join(args.make, "data"), args.images, sizes["sides"])
        return
    args.out_dir = args.run or args.run_revelio or args.compare
    vae_cfg = os.path.join(args.out_dir, "pipeline", "vae", "config.json")
    if not os.path.exists(vae_cfg):
        sys.exit(f"{vae_cfg} not found: --make {args.out_dir} first")
    with open(vae_cfg) as f:
        args.resolution = args.resolution or json.load(f)["sample_size"]
    if args.run:
        if not args.mode:
            sys.exit("--run needs --mode reference or tuned")
        run_torch(args)
    elif args.run_revelio:
        run_revelio(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
