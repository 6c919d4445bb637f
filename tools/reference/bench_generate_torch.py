#!/usr/bin/env python3
"""Generation throughput, revelio against diffusers on the same machine in one run (issue 15):
an SD 1.4-shaped pipeline with seeded random weights (SD 1.5's configs, which are SD 1.4's
architecture; bench_extract_torch.make_pipeline, weights stored in bf16 and read as f32 by both
sides), 256 px, 5 DDIM steps, guidance 7.5, batch 2 (each step one U-Net call on 4 rows: both
CFG branches of 2 prompts), on the CPU in f32.

  --make OUT_DIR [--tiny]
      OUT_DIR/pipeline/ (as bench_extract_torch.py --make writes it; --tiny: its small models)
      and OUT_DIR/prompts.txt.
  --run OUT_DIR [--images 4] [--threads T] [--revelio-bin PATH]
      1. diffusers: StableDiffusionPipeline.from_pretrained (f32, the folder's DDIMScheduler),
         torch.set_num_threads(T), the prompts in batches of 2 from revelio's initial latents
         (rng::derive(seed, [i, 0]), ported in common.py), output_type "np"; each batch's wall
         time (text encoder, 5 steps, VAE decode); then one U-Net call on a batch's 4 rows and
         one VAE decode of 2 latents, timed alone (revelio's: its sampling and decode times over
         the calls and batches made), to show where the time goes. The first batch is also
         timed and reported apart (oneDNN primitive creation), the figure is the batches after it.
      2. revelio: `revelio generate --model OUT_DIR/pipeline --prompts OUT_DIR/prompts.txt
         --out OUT_DIR/revelio --steps 5 --guidance 7.5 --height 256 --width 256 --batch-size 2
         --device cpu --dtype f32 --save-latents --shard-size 2`, RAYON_NUM_THREADS=T, into a
         fresh folder; its own summary (sampling and decode times), and the wall time of the
         whole command (model load included).
      3. agreement: revelio's final latents (--save-latents) against diffusers' (read with
         callback_on_step_end), relative L2; the PNGs against diffusers' images, max |diff| in
         8-bit levels.
      Writes OUT_DIR/bench_generate.json: machine, commands, both sides' figures, the speed-up
      (images/s of the loop after the first batch, and of revelio's whole command against
      diffusers' batches, load excluded on its side).

  P=/work/venv/bin/python S=tools/reference/bench_generate_torch.py X=/tmp/gb
  $P $S --make $X && $P $S --run $X --images 4
  cp $X/bench_generate.json benches/results/generate-cpu.json
"""

import argparse
import json
import os
import platform
import re
import shutil
import sys
import time

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_extract_torch as eb  # noqa: E402
import benchlib  # noqa: E402
import common  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JSON = "bench_generate.json"
STEPS, GUIDANCE, SIZE, BATCH, SEED = 5, 7.5, 256, 2, 0
PROMPTS = ["a photo of a cat", "a photo of a dog on a beach", "an oil painting of a lighthouse at dusk",
           "a red car parked in front of a house", "a bowl of fruit on a wooden table", "a mountain lake at sunrise",
           "a portrait photo of an old man", "a city street at night in the rain"]
SUMMARY = re.compile(r"generate: (\d+) images in ([\d.]+) s \(([\d.]+) img/s\)")
TIMES = re.compile(r"time: prompts and latents ([\d.]+) s, sampling \(U-Net, \d+ steps\) ([\d.]+) s, "
                   r"VAE decode ([\d.]+) s, write ([\d.]+) s")


def machine(threads):
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "load_average_1_5_15_min": os.getloadavg(),
            "torch": torch.__version__,
            "diffusers": __import__("diffusers").__version__, "transformers": __import__("transformers").__version__}


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_diffusers(args, prompts, size):
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(os.path.join(args.out_dir, "pipeline"), torch_dtype=torch.float32,
                                                   safety_checker=None, feature_extractor=None,
                                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    load_s = time.perf_counter() - t0
    shape = (4, size // 8, size // 8)
    finals, images, batches = [], [], []

    def keep_final(p, i, t, kw):
        if i == STEPS - 1:
            finals.append(kw["latents"].clone())
        return kw

    with torch.inference_mode():
        for b0 in range(0, len(prompts), BATCH):
            idx = list(range(b0, min(b0 + BATCH, len(prompts))))
            latents = torch.stack([common.normal_tensor(common.derive(SEED, [i, 0]), shape) for i in idx])
            t0 = time.perf_counter()
            out = pipe([prompts[i] for i in idx], height=size, width=size, num_inference_steps=STEPS,
                       guidance_scale=GUIDANCE, latents=latents, output_type="np", callback_on_step_end=keep_final)
            batches.append(time.perf_counter() - t0)
            images.append(torch.from_numpy(out.images))
        # Where a batch's time goes: one U-Net call on its 2 * BATCH rows, one VAE decode of BATCH
        # (the faster of two calls).
        x, ctx = torch.randn(2 * BATCH, *shape), torch.randn(2 * BATCH, 77, pipe.text_encoder.config.hidden_size)
        unet_call = min(timed(lambda: pipe.unet(x, 500, ctx)) for _ in range(2))
        vae_decode = min(timed(lambda: pipe.vae.decode(x[:BATCH] / pipe.vae.config.scaling_factor)) for _ in range(2))
    # The batches after the first (all of them when there is one).
    later, later_images = (batches[1:], len(prompts) - BATCH) if len(batches) > 1 else (batches, len(prompts))
    row = {"load_s": load_s, "batch_s": batches, "images_per_s": later_images / sum(later),
           "images_per_s_all_batches": len(prompts) / sum(batches),
           "unet_call_s": unet_call, "vae_decode_batch_s": vae_decode,
           "scheduler": type(pipe.scheduler).__name__, "attention": "diffusers default (AttnProcessor2_0, SDPA)"}
    return row, torch.cat(finals), torch.cat(images)


def run_revelio(args, size):
    out = os.path.join(args.out_dir, "revelio")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [args.revelio_bin, "generate", "--model", os.path.join(args.out_dir, "pipeline"), "--prompts", args.prompts,
           "--out", out, "--steps", str(STEPS), "--guidance", str(GUIDANCE),
           "--height", str(size), "--width", str(size), "--batch-size", str(BATCH), "--device", "cpu", "--dtype",
           "f32", "--seed", str(SEED), "--save-latents", "--shard-size", str(BATCH)]
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    print(" ".join(cmd), file=sys.stderr)
    m, tm, wall = benchlib.run_revelio(cmd, env, "generate", SUMMARY, TIMES)
    images, elapsed = int(m.group(1)), float(m.group(2))
    text, sampling, decode, write = (float(tm.group(i)) for i in range(1, 5))
    loop = text + sampling + decode
    batches = -(-images // BATCH)
    row = {"command": "RAYON_NUM_THREADS=%d " % args.threads + " ".join(cmd), "images": images, "wall_s": wall,
           "elapsed_s": elapsed, "prompts_and_latents_s": text, "sampling_s": sampling, "decode_s": decode,
           "write_s": write, "unet_call_s": sampling / (batches * STEPS), "vae_decode_batch_s": decode / batches,
           "images_per_s": images / loop, "images_per_s_whole_command": images / wall,
           "note": "images_per_s: images over text encoding + sampling + VAE decode (revelio prints times to 0.1 s); "
                   "whole command: model load, PNG and latent writes included"}
    return row, out


def run(args):
    with open(os.path.join(args.out_dir, "pipeline", "vae", "config.json")) as f:
        tiny = json.load(f)["sample_size"] < 512
    size = 64 if tiny else SIZE
    with open(os.path.join(args.out_dir, "prompts.txt")) as f:
        prompts = [l.rstrip("\n") for l in f if l.strip()][: args.images]
    args.prompts = os.path.join(args.out_dir, f"prompts-{len(prompts)}.txt")
    with open(args.prompts, "w") as f:
        f.write("".join(p + "\n" for p in prompts))
    torch_row, finals, images = run_diffusers(args, prompts, size)
    rev_row, out = run_revelio(args, size)
    ours = torch.stack([load_file(os.path.join(out, "latents", f"{i:06}.safetensors"))["final"] for i in range(len(prompts))])
    from PIL import Image
    import numpy as np

    pngs = torch.stack([torch.from_numpy(np.asarray(Image.open(os.path.join(out, "images", f"{i:06}.png")), dtype=np.float32))
                        for i in range(len(prompts))])
    agree = {"final_latents_rel_l2": ((ours - finals).norm() / finals.norm()).item(),
             "png_max_abs_levels": (pngs - (images * 255)).abs().max().item()}
    results = {
        "what": f"SD 1.4-shaped pipeline (random weights), {size} px, {STEPS} DDIM steps, guidance {GUIDANCE}, "
                f"batch {BATCH} (4 U-Net rows per step), {len(prompts)} prompts, f32 on the CPU",
        "machine": machine(args.threads),
        "diffusers": torch_row,
        "revelio": rev_row,
        "agreement": agree,
        "speedup": {"revelio_vs_diffusers": rev_row["images_per_s"] / torch_row["images_per_s"],
                    "revelio_whole_command_vs_diffusers": rev_row["images_per_s_whole_command"] / torch_row["images_per_s"]},
        "script": "tools/reference/bench_generate_torch.py",
    }
    eb.write_json(os.path.join(args.out_dir, JSON), results)
    print(json.dumps(results["speedup"]), json.dumps(agree), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--make", metavar="OUT_DIR")
    what.add_argument("--run", metavar="OUT_DIR")
    ap.add_argument("--tiny", action="store_true", help="--make: small models (a smoke test at 64 px)")
    ap.add_argument("--images", type=int, default=4, help="--run: prompts (images), in batches of 2")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch and rayon threads")
    ap.add_argument("--revelio-bin", default=os.path.join(ROOT, "target", "release", "revelio"))
    args = ap.parse_args()
    if args.make:
        shutil.rmtree(args.make, ignore_errors=True)
        eb.make_pipeline(os.path.join(args.make, "pipeline"), eb.TINY if args.tiny else eb.FULL)
        with open(os.path.join(args.make, "prompts.txt"), "w") as f:
            f.write("".join(p + "\n" for p in PROMPTS))
        return
    args.out_dir = args.run
    run(args)


if __name__ == "__main__":
    main()
