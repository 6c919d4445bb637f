#!/usr/bin/env python3
"""PyTorch timings of the ops in benches/shapes.json, for comparison with revelio's benches.

Run on the same machine as the Rust bench, then pass the JSON to it:

    python3 tools/bench_torch.py --device cuda --dtype bf16 --json benches/results/torch-cuda.json
    cargo bench --bench conv -- --device cuda --dtype bf16 --torch benches/results/torch-cuda.json

On the CPU (`--device cpu --threads 2`) everything runs in f32. Conv is F.conv2d (cuDNN on a
GPU, oneDNN on the CPU), attention is F.scaled_dot_product_attention on contiguous
[B, H, N, D] tensors (flash or memory-efficient kernels on a GPU), group norm is F.group_norm
followed by F.silu where the shape asks for it. Each time is the median of `--iters` runs after
warm-up, timed with CUDA events on a GPU.
"""

import argparse
import json
import os
import sys
import statistics
import time

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(fn, device, iters):
    for _ in range(3):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
        times = []
        for _ in range(iters):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop))
    else:
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--dtype", default="bf16", choices=["f32", "f16", "bf16"])
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--iters", type=int, default=0)
    ap.add_argument("--ops", default="conv2d,attention,group_norm")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    if device == "cpu":
        dtype = torch.float32
    iters = args.iters or (20 if device == "cuda" else 5)
    with open(os.path.join(ROOT, "benches", "shapes.json")) as f:
        shapes = json.load(f)
    batch = shapes["gpu_batch" if device == "cuda" else "cpu_batch"]
    ops = args.ops.split(",")
    gen = torch.Generator(device="cpu").manual_seed(0)

    def randn(*dims):
        return torch.randn(*dims, generator=gen).to(device=device, dtype=dtype)

    rows = []
    with torch.no_grad():
        if "conv2d" in ops:
            for s in shapes["conv"]:
                x = randn(batch, s["cin"], s["h"], s["w"])
                w = randn(s["cout"], s["cin"], s["k"], s["k"])
                b = randn(s["cout"])
                ms = timed(lambda: F.conv2d(x, w, b, stride=s["stride"], padding=s["pad"]), device, iters)
                rows.append({"op": "conv2d", "name": s["name"], "median_ms": ms})
                print(f"conv2d     {s['name']:<30} {ms:9.3f} ms")
        if "attention" in ops:
            for s in shapes["attention"]:
                q = randn(batch, s["heads"], s["nq"], s["d"])
                k = randn(batch, s["heads"], s["nk"], s["d"])
                v = randn(batch, s["heads"], s["nk"], s["d"])
                ms = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=s["causal"]), device, iters)
                rows.append({"op": "attention", "name": s["name"], "median_ms": ms})
                print(f"attention  {s['name']:<30} {ms:9.3f} ms")
        if "group_norm" in ops:
            for s in shapes["group_norm"]:
                x = randn(batch, s["c"], s["h"], s["w"])
                g, b = randn(s["c"]), randn(s["c"])

                def gn():
                    y = F.group_norm(x, s["groups"], g, b, 1e-5)
                    return F.silu(y) if s["silu"] else y

                ms = timed(gn, device, iters)
                rows.append({"op": "group_norm", "name": s["name"], "median_ms": ms})
                print(f"group_norm {s['name']:<30} {ms:9.3f} ms")

    doc = {
        "command": " ".join(["python3", "tools/bench_torch.py"] + sys.argv[1:]),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "dtype": str(dtype).replace("torch.", ""),
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
