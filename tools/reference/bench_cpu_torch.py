#!/usr/bin/env python3
"""revelio against PyTorch on the CPU, side by side: the four full-size models of issue 20 with
random weights, f32, batch 1, 256 px, both timed in one run, interleaved, into one JSON.

  --make DIR
      Builds with diffusers and writes, each as a diffusers component folder (config.json and
      bf16 safetensors, so both sides load the same values: the f32 models are those weights
      rounded through bf16):
        DIR/unet          SD 1.5's UNet2DConditionModel (bench_unet_torch.SD15), seed 1
        DIR/vae           SD's AutoencoderKL (bench_extract_torch.VAE), seed 2
        DIR/transformer   DiT-XL/2 at 256 px (bench_dit_torch's xl2-256), seed 3
      About 3.4 GB on disk, a few minutes.

  --run DIR [--revelio-bin PATH] [--rounds 5] [--warmup 2] [--iters 2] [--threads 2] [--json PATH]
      Times four rows:
        unet      the U-Net's full forward (timestep 25, 77 random text states)
        unet-up1  the same, stopped after up_blocks.1 (revelio `--taps up.1`; PyTorch: a forward
                  hook on up_blocks.1 that raises, bench_unet_torch's early stop)
        vae       the VAE encoder: encoder + quant_conv, the posterior's mean (revelio
                  `--vae encode`), from 256 x 256 pixels
        dit       DiT-XL/2's full forward (timestep 25, the null class)
      Each round runs, per row, one `revelio bench` process and one PyTorch process (this
      script with --worker), revelio first in even rounds and PyTorch first in odd ones. Each
      process loads the model (not timed), runs --warmup forwards, then times --iters forwards
      with a wall clock; every timed forward is a sample. Per side the JSON has the samples, their
      median, min and max, the spread ((max - min) / median), the ratio of the medians and the
      per-round ratios, and two peak memories: `peak_rss_mib`, the process's peak resident size
      over its whole life as the kernel counts it (ru_maxrss: loading included), and
      `forward_peak_rss_mib`, its peak during the forwards alone (VmHWM reset after loading,
      through /proc/self/clear_refs). Also: extraction (VAE encode + U-Net to up.1) in images/s
      per side, the machine, threads, versions, and the load average before each process.
      Both sides run with --threads threads: RAYON_NUM_THREADS for revelio,
      torch.set_num_threads and OMP_NUM_THREADS / MKL_NUM_THREADS for PyTorch.

      The issue's targets are written into the JSON (`target_ratio` 0.8 per row, extraction at
      1.25x PyTorch's images/s) with whether this run met them; it is a benchmark, not a test:
      it exits 0 either way.

  --worker ROW --dir DIR ...   (internal) one PyTorch process: prints one JSON line.

    /work/venv/bin/python tools/reference/bench_cpu_torch.py --make /tmp/cpu-bench
    cargo build --release
    /work/venv/bin/python tools/reference/bench_cpu_torch.py --run /tmp/cpu-bench \
        --json benches/results/cpu-vs-torch.json
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

RESOLUTION = 256
TIMESTEP = 25
ROWS = {
    "unet": dict(folder="unet", what="SD 1.5 U-Net, full forward", revelio=[]),
    "unet-up1": dict(folder="unet", what="SD 1.5 U-Net, stopped after up.1 (extraction)", revelio=["--taps", "up.1"]),
    "vae": dict(folder="vae", what="SD VAE encoder", revelio=["--vae", "encode"]),
    "dit": dict(folder="transformer", what="DiT-XL/2", revelio=[]),
}
TARGET_RATIO = 0.8
TARGET_EXTRACTION = 1.25


# ---- --make ----
def make(out):
    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    import bench_dit_torch as dit
    import bench_extract_torch as ex
    import bench_unet_torch as ub
    from benchlib import perturb, round_bf16

    def save(model, folder):
        os.makedirs(folder, exist_ok=True)
        model.save_config(folder)
        save_file({k: v.to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()},
                  os.path.join(folder, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
        print(f"{folder}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters", file=sys.stderr)

    save(ub.build(ub.SD15, 1), os.path.join(out, "unet"))
    torch.manual_seed(2)
    save(round_bf16(perturb(AutoencoderKL(**ex.VAE).eval(), 2, scale=0.02, vector_scale=0.1)), os.path.join(out, "vae"))
    save(dit.build(dit.CONFIGS["xl2-256"], 3), os.path.join(out, "transformer"))


# ---- one PyTorch process ----
def rss_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


def worker(args):
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    folder = os.path.join(args.dir, ROWS[args.worker]["folder"])
    g = torch.Generator().manual_seed(1)
    lat = RESOLUTION // 8
    if args.worker.startswith("unet"):
        import bench_unet_torch as ub
        from diffusers import UNet2DConditionModel
        from diffusers.models.attention_processor import AttnProcessor2_0

        model = UNet2DConditionModel.from_pretrained(folder, torch_dtype=torch.float32).eval()
        model.set_attn_processor(AttnProcessor2_0())
        x = torch.randn(1, 4, lat, lat, generator=g)
        t = torch.tensor([float(TIMESTEP)])
        c = torch.randn(1, 77, model.config.cross_attention_dim, generator=g)
        if args.worker == "unet-up1":
            ub.record(model, ["up.1"], {}, stop=True)

        def forward():
            try:
                return model(x, t, encoder_hidden_states=c).sample
            except ub._Stop:
                return None
    elif args.worker == "vae":
        from diffusers import AutoencoderKL

        model = AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32).eval()
        x = torch.randn(1, 3, RESOLUTION, RESOLUTION, generator=g)

        def forward():
            return model.encode(x).latent_dist.mode()
    else:
        from diffusers import DiTTransformer2DModel

        model = DiTTransformer2DModel.from_pretrained(folder, torch_dtype=torch.float32).eval()
        x = torch.randn(1, 4, lat, lat, generator=g)
        t = torch.tensor([TIMESTEP])
        y = torch.tensor([model.config.num_embeds_ada_norm])  # the null class

        def forward():
            return model(x, timestep=t, class_labels=y).sample
    load_s = time.perf_counter() - t0
    times = []
    with torch.inference_mode():
        for _ in range(args.warmup):
            forward()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM: the peak below is the forwards' own
        for _ in range(args.iters):
            start = time.perf_counter()
            forward()
            times.append((time.perf_counter() - start) * 1e3)
    print(json.dumps({"times_ms": times, "load_s": load_s, "forward_peak_rss_mib": rss_mib("VmHWM"),
                      "threads": torch.get_num_threads()}))


# ---- --run ----
def spawn(cmd, env):
    """Runs cmd to completion: its stdout, exit status, wall seconds and peak RSS (MiB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return out, proc.returncode, time.perf_counter() - t0, usage.ru_maxrss / 1024


def run_revelio(args, row, env):
    with tempfile.TemporaryDirectory() as tmp:
        out_json = os.path.join(tmp, "bench.json")
        cmd = [args.revelio_bin, "bench", "--model", os.path.join(args.run, ROWS[row]["folder"]), "--device", "cpu",
               "--batch-size", "1", "--resolution", str(RESOLUTION), "--timestep", str(TIMESTEP),
               "--warmup", str(args.warmup), "--iters", str(args.iters), "--json", out_json, *ROWS[row]["revelio"]]
        _, code, wall, peak = spawn(cmd, env)
        if code != 0:
            sys.exit(f"revelio failed (exit {code}): {' '.join(cmd)}")
        with open(out_json) as f:
            res = json.load(f)
    peak_fwd = res.get("host_peak_bytes")
    return {"times_ms": res["times_ms"], "forward_peak_rss_mib": peak_fwd / 2**20 if peak_fwd else None,
            "peak_rss_mib": peak, "wall_s": wall, "command": " ".join(cmd)}


def run_torch(args, row, env):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", row, "--dir", args.run, "--threads",
           str(args.threads), "--warmup", str(args.warmup), "--iters", str(args.iters)]
    out, code, wall, peak = spawn(cmd, env)
    if code != 0:
        sys.exit(f"the PyTorch worker failed (exit {code}): {' '.join(cmd)}")
    res = json.loads(out.strip().splitlines()[-1])
    return {**res, "peak_rss_mib": peak, "wall_s": wall}


def summary(runs):
    times = [t for r in runs for t in r["times_ms"]]
    med = statistics.median(times)
    return {"median_ms": med, "min_ms": min(times), "max_ms": max(times), "spread": (max(times) - min(times)) / med,
            "samples": len(times), "times_ms": times,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "forward_peak_rss_mib": max((r["forward_peak_rss_mib"] or 0) for r in runs) or None,
            "load_average_before": [r["load_average_before"] for r in runs]}


def machine():
    info = {"platform": platform.platform(), "cpus": os.cpu_count(),
            "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return info


def versions(args):
    import diffusers
    import torch
    import transformers

    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    rev = subprocess.run([args.revelio_bin, "--version"], capture_output=True, text=True).stdout.strip()
    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "revelio": rev,
            "revelio_commit": git("rev-parse", "HEAD") + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else ""),
            "python": platform.python_version()}


def run(args):
    rows = args.rows.split(",")
    for r in rows:
        if r not in ROWS:
            sys.exit(f"--rows: unknown row {r!r} (expected some of {', '.join(ROWS)})")
        if not os.path.exists(os.path.join(args.run, ROWS[r]["folder"], "config.json")):
            sys.exit(f"{args.run}/{ROWS[r]['folder']} not found: --make {args.run} first")
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    runs = {r: {"revelio": [], "torch": []} for r in rows}
    for k in range(args.rounds):
        for r in rows:
            order = [("revelio", run_revelio), ("torch", run_torch)]
            for side, fn in order if k % 2 == 0 else order[::-1]:
                load = os.getloadavg()[0]
                res = fn(args, r, env)
                res["load_average_before"] = load
                runs[r][side].append(res)
                print(f"round {k + 1}/{args.rounds} {r:8s} {side:7s} {statistics.median(res['times_ms']):8.0f} ms "
                      f"(load {load:.2f}, peak {res['peak_rss_mib']:.0f} MiB)", file=sys.stderr)
    results = {"command": " ".join([os.path.basename(sys.executable), *sys.argv]),
               "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(), "threads": args.threads,
               "versions": versions(args),
               "settings": {"batch": 1, "resolution": RESOLUTION, "dtype": "f32", "timestep": TIMESTEP,
                            "rounds": args.rounds, "warmup": args.warmup, "iters": args.iters},
               "rows": {}}
    for r in rows:
        ours, theirs = summary(runs[r]["revelio"]), summary(runs[r]["torch"])
        ratio = ours["median_ms"] / theirs["median_ms"]
        per_round = [statistics.median(a["times_ms"]) / statistics.median(b["times_ms"])
                     for a, b in zip(runs[r]["revelio"], runs[r]["torch"])]
        results["rows"][r] = {"what": ROWS[r]["what"], "revelio_command": runs[r]["revelio"][0]["command"],
                              "revelio": ours, "torch": theirs, "ratio": ratio, "round_ratios": per_round,
                              "target_ratio": TARGET_RATIO,
                              "met": ratio <= TARGET_RATIO and ours["spread"] <= theirs["spread"]
                              and ours["peak_rss_mib"] <= theirs["peak_rss_mib"]}
    if "vae" in rows and "unet-up1" in rows:
        ips = {s: 1e3 / (results["rows"]["vae"][s]["median_ms"] + results["rows"]["unet-up1"][s]["median_ms"])
               for s in ("revelio", "torch")}
        results["extraction"] = {"what": "VAE encode + U-Net to up.1, images/s (1 / the sum of the medians)",
                                 "revelio_images_per_s": ips["revelio"], "torch_images_per_s": ips["torch"],
                                 "speedup": ips["revelio"] / ips["torch"], "target_speedup": TARGET_EXTRACTION,
                                 "met": ips["revelio"] / ips["torch"] >= TARGET_EXTRACTION}
    print(f"{'row':9s} {'PyTorch ms':>18s} {'revelio ms':>18s} {'ratio':>6s} {'peak MiB (torch/ours)':>22s}",
          file=sys.stderr)
    for r, v in results["rows"].items():
        t, o = v["torch"], v["revelio"]
        print(f"{r:9s} {t['median_ms']:7.0f} ({t['min_ms']:.0f}-{t['max_ms']:.0f}) {o['median_ms']:7.0f} "
              f"({o['min_ms']:.0f}-{o['max_ms']:.0f}) {v['ratio']:6.2f} {t['peak_rss_mib']:10.0f}/{o['peak_rss_mib']:.0f}",
              file=sys.stderr)
    if "extraction" in results:
        e = results["extraction"]
        print(f"extraction: revelio {e['revelio_images_per_s']:.3f} images/s, PyTorch {e['torch_images_per_s']:.3f} "
              f"({e['speedup']:.2f}x)", file=sys.stderr)
    text = json.dumps(results, indent=2) + "\n"
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            f.write(text)
        print(f"wrote {args.json}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--make", metavar="DIR", help="write the three model folders")
    what.add_argument("--run", metavar="DIR", help="time revelio and PyTorch on them")
    what.add_argument("--worker", choices=list(ROWS), help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--rows", default=",".join(ROWS), help=f"--run: which rows (default {','.join(ROWS)})")
    ap.add_argument("--revelio-bin", default=os.path.join(ROOT, "target", "release", "revelio"))
    ap.add_argument("--rounds", type=int, default=5, help="processes per side and row (interleaved)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed forwards per process")
    ap.add_argument("--iters", type=int, default=2, help="timed forwards per process")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="--run: write the results here (default: stdout)")
    args = ap.parse_args()
    if args.make:
        make(args.make)
    elif args.worker:
        worker(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
