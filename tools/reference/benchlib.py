"""Shared pieces of the full-size benchmark scripts in tools/reference/ (bench_dit_torch.py,
bench_unet_torch.py, bench_extract_torch.py): seeded weight perturbation and bf16 rounding,
timing, error measures, and the results file with its final comparison step."""

import json
import os
import statistics
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file


def perturb(model, seed, scale=0.02, vector_scale=None):
    """Moves every parameter off its init, seeded: by `scale` times a standard normal, and 1-D
    parameters (norm weights, biases) by `vector_scale` when given."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            s = vector_scale if (vector_scale is not None and p.ndim == 1) else scale
            p.add_(s * torch.randn(p.shape, generator=g))
    return model


def round_bf16(model):
    """Rounds every parameter through bf16 (kept in f32), so a bf16 load of the saved weights
    sees exactly the values the f32 reference used."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return model


def timed_ms(fn, iters, device):
    """Median, min and max milliseconds of `iters` calls after 3 warm-up calls: CUDA events on a
    GPU (peak-memory statistics reset first), wall clock on the CPU."""
    for _ in range(3):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(iters):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop))
    else:
        for _ in range(iters):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times), max(times)


def timing(fn, iters, device, batch):
    """`timed_ms` as a results row with images/s (and peak MiB on a GPU)."""
    ms, lo, hi = timed_ms(fn, iters, device)
    row = {"ms": ms, "min_ms": lo, "max_ms": hi, "images_per_s": batch / (ms / 1e3)}
    if device.type == "cuda":
        row["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def errors(actual, expected):
    """Relative L2 and max |diff| of each tensor of `actual` against `expected`, by name."""
    out = {}
    for k, e in expected.items():
        if k not in actual:
            continue
        a = actual[k].float()
        if a.shape != e.shape:
            out[k] = {"error": f"shape {list(a.shape)} vs {list(e.shape)}"}
            continue
        diff = (a - e).double()
        out[k] = {"rel_l2": (diff.norm() / e.double().norm()).item(), "max_abs": diff.abs().max().item()}
    return out


def load_results(json_path):
    """The results file so far (empty when there is none)."""
    if not os.path.exists(json_path):
        return {}
    with open(json_path) as f:
        return json.load(f)


def compare_and_write(results, names, out_dir, json_path):
    """Step 3 of the scripts: for each config, revelio's OUT_DIR/<config>/ours.safetensors against
    reference.safetensors (when revelio has run), then the results file, written."""
    for name in names:
        ours = os.path.join(out_dir, name, "ours.safetensors")
        if os.path.exists(ours):
            ref = load_file(os.path.join(out_dir, name, "reference.safetensors"))
            results.setdefault(name, {})["ours_vs_diffusers_f32"] = errors(load_file(ours), ref)
        else:
            print(f"{ours} not found: run revelio forward first (see --help) to get our errors", file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {json_path}", file=sys.stderr)


def run_revelio(cmd, env, command, summary, times):
    """Runs one revelio command line, echoing its stdout to stderr: the matches of its
    `summary` and `times` lines (compiled regexes) and the wall time in seconds. Exits when the
    command fails or prints either line unmatched."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    wall = time.perf_counter() - t0
    sys.stderr.write(proc.stdout)
    if proc.returncode != 0:
        sys.exit(f"revelio {command} failed (exit {proc.returncode})")
    m, tm = summary.search(proc.stdout), times.search(proc.stdout)
    if not (m and tm):
        sys.exit(f"could not read revelio's summary lines ({command}: ... img/s; time: ...)")
    return m, tm, wall
