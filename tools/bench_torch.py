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

`--ops sae` times one whole TopK SAE training step (forward, normalized-MSE loss, backward,
decoder-gradient projection, Adam, decoder renormalisation) at SAE_SHAPES (the list of
benches/sae.rs), f32 master weights with the GEMMs under autocast to --dtype (f16/bf16), in two
styles: `sae_step_dense` as Revelio's KSparseAutoencoder (GEMM, torch.topk, scatter to a dense
code, dense decoder GEMM) and `sae_step_sparse` as EleutherAI's sparsify (the same encoder, a
decoder of k rows per sample by embedding_bag). Adam is torch's fused implementation on a GPU.
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


# (d, n, k, batch), as benches/sae.rs.
SAE_SHAPES = {"cuda": [(1280, 81920, 32, 8192), (1280, 20480, 32, 8192)], "cpu": [(1280, 20480, 32, 256)]}


class TopKSae(torch.nn.Module):
    """Revelio's parameters and init: W_enc [d, n], b_enc [n], W_dec [n, d] (unit rows), b_dec [d]."""

    def __init__(self, d, n, k, device, sparse_decoder):
        super().__init__()
        self.k, self.sparse_decoder = k, sparse_decoder
        self.W_enc = torch.nn.Parameter(torch.nn.init.kaiming_uniform_(torch.empty(d, n, device=device)))
        self.b_enc = torch.nn.Parameter(torch.zeros(n, device=device))
        w_dec = torch.nn.init.kaiming_uniform_(torch.empty(n, d, device=device))
        self.W_dec = torch.nn.Parameter(w_dec / w_dec.norm(dim=1, keepdim=True))
        self.b_dec = torch.nn.Parameter(torch.zeros(d, device=device))

    def loss(self, x):
        # addmm keeps the bias inside the GEMM, so under autocast pre stays in 16 bits.
        pre = torch.addmm(self.b_enc, x - self.b_dec, self.W_enc)
        vals, idx = pre.topk(self.k, sorted=False)
        if self.sparse_decoder:
            x_hat = F.embedding_bag(idx, self.W_dec, per_sample_weights=vals.to(self.W_dec.dtype), mode="sum") + self.b_dec
        else:
            z = torch.zeros_like(pre).scatter_(-1, idx, vals)
            x_hat = torch.addmm(self.b_dec, z, self.W_dec)
        return ((x_hat.float() - x).pow(2).mean() / (x - x.mean(0)).pow(2).mean()).nan_to_num(0)


def sae_rows(device, dtype, iters):
    rows = []
    autocast = device == "cuda" and dtype != torch.float32
    torch.backends.cuda.matmul.allow_tf32 = False
    for d, n, k, b in SAE_SHAPES[device]:
        name = f"d{d} n{n} k{k} b{b}"
        x = torch.randn(b, d, generator=torch.Generator(device="cpu").manual_seed(0)).to(device)
        for style, sparse in (("sae_step_dense", False), ("sae_step_sparse", True)):
            torch.manual_seed(0)
            sae = TopKSae(d, n, k, device, sparse)
            opt = torch.optim.Adam(sae.parameters(), lr=4e-4, fused=device == "cuda")

            def step():
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device_type=device, dtype=dtype, enabled=autocast):
                    loss = sae.loss(x)
                loss.backward()
                with torch.no_grad():
                    w = sae.W_dec
                    w.grad -= (w.grad * w).sum(-1, keepdim=True) * w
                opt.step()
                with torch.no_grad():
                    sae.W_dec /= sae.W_dec.norm(dim=1, keepdim=True)

            ms = timed(step, device, iters)
            rows.append({"op": style, "name": name, "median_ms": ms, "samples_per_s": b / (ms * 1e-3)})
            print(f"{style:<16} {name:<30} {ms:9.3f} ms  {b / (ms * 1e-3):12.0f} samples/s")
            del sae, opt
            if device == "cuda":
                torch.cuda.empty_cache()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--dtype", default="bf16", choices=["f32", "f16", "bf16"])
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--iters", type=int, default=0)
    ap.add_argument("--ops", default="conv2d,attention,group_norm,sae")
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

    if "sae" in ops:
        rows.extend(sae_rows(device, dtype, iters))

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
