#!/usr/bin/env python3
"""The mutation check: plants one bug of each kind the simulated device is meant to catch in a
copy of kernels/, builds the simulator from it, runs the GPU tests that exercise that code under
several thread orders, and reports whether each bug was caught (a failing test, or the
simulator stopping the launch) and how.

    python3 sim/mutate.py                # all mutations; writes sim/mutation-report.txt
    python3 sim/mutate.py --only barrier # the mutations whose name contains "barrier"

The revelio binaries still load cubins NVRTC builds from the real kernels/ (the names match),
while the simulator runs the mutated host build: exactly a kernel bug on a GPU. Needs the NVRTC
wheel (REVELIO_PY_SITE, as .ci/run installs it) and takes a few minutes.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORDERS = ["forward", "greedy", "reverse"]

# (name, file, original text, mutated text, tests (filters for the gpu test binary), what it is)
MUTATIONS = [
    (
        "ldmatrix-mode",
        "mma.cuh",
        "ldmatrix_x4_trans(r, sb + (kk + (lane & 15)) * TILE_LDB",
        "ldmatrix_x4(r, sb + (kk + (lane & 15)) * TILE_LDB",
        ["conv::conv2d_odd_shapes", "sae::fused_encoder_picks_a_true_top_k"],
        "the block tile reads a [k][n] B tile with ldmatrix without .trans",
    ),
    (
        "mma-fragments",
        "attention.cu",
        "mma_16816<T>(s[mt][2 * np], a[mt], bk[0], bk[1]);",
        "mma_16816<T>(s[mt][2 * np], a[mt], bk[1], bk[0]);",
        ["attention::attention_small_shapes"],
        "attention's S = Q K^T passes the two B registers of an mma swapped",
    ),
    (
        "dropped-barrier",
        "attention.cu",
        "        __syncthreads();  // the next iteration refills the buffer read here\n",
        "\n",
        ["attention::attention_small_shapes"],
        "attention's loop lacks the barrier before the next tile overwrites the buffer being read",
    ),
    (
        "dropped-cp-async-wait",
        "attention.cu",
        "            cp_async_wait<1>();\n",
        "\n",
        ["attention::attention_small_shapes"],
        "attention reads a K/V tile without waiting for its cp.async group",
    ),
    (
        "divergent-barrier",
        "common.cuh",
        "    if (lane == 0) scratch[warp] = v;\n    __syncthreads();\n    float r = (lane < nwarps) ? scratch[lane] : 0.0f;",
        "    if (lane == 0) scratch[warp] = v;\n    if (warp == 0) __syncthreads();\n    float r = (lane < nwarps) ? scratch[lane] : 0.0f;",
        ["softmax::softmax_matches_cpu"],
        "block_sum's first barrier is reached by warp 0 only",
    ),
    (
        "broken-warp-reduction",
        "common.cuh",
        "    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);",
        "    for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);",
        ["softmax::softmax_matches_cpu", "norm::layer_norm_matches_cpu"],
        "warp_sum stops one butterfly step short (sums 16 lanes, not 32)",
    ),
]


def gpu_test_binary():
    out = subprocess.run(
        ["cargo", "test", "--release", "--locked", "--test", "gpu", "--no-run", "--message-format=json"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    for line in out.splitlines():
        m = json.loads(line)
        if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gpu":
            return m["executable"]
    sys.exit("no gpu test binary")


def run_tests(binary, sim_dir, filters, order):
    """(caught, first telling line) for `filters` under `order`."""
    env = dict(os.environ, REVELIO_SIM=sim_dir, REVELIO_SIM_ORDER=order)
    env.pop("REVELIO_SIM_COVERAGE", None)
    r = subprocess.run([binary, "--include-ignored", "--exact"] + filters, env=env, capture_output=True, text=True, timeout=1800)
    lines = (r.stdout + r.stderr).splitlines()
    if r.returncode == 0:
        return False, ""
    for line in lines:  # the simulator stopped a launch
        if "revelio-sim:" in line:
            return True, line.strip()[:230]
    for i, line in enumerate(lines):  # a test's assertion
        if "panicked at" in line and i + 1 < len(lines):
            return True, lines[i + 1].strip()[:230]
    return True, (lines[-1] if lines else f"exit {r.returncode}")[:230]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="run the mutations whose name contains this")
    ap.add_argument("--report", default=os.path.join(ROOT, "sim", "mutation-report.txt"))
    args = ap.parse_args()
    os.environ.setdefault("REVELIO_PY_SITE", os.path.join(ROOT, ".ci", "py"))
    binary = gpu_test_binary()
    out_dir = os.path.join(ROOT, "target", "sim-mutant")
    lines = [f"revelio mutation check ({time.strftime('%Y-%m-%d')}): one planted bug per row, tests/gpu on the simulated device", ""]

    # The control: the unmutated kernels pass the same tests under every order.
    all_filters = sorted({f for m in MUTATIONS for f in m[4]})
    subprocess.run([sys.executable, os.path.join(ROOT, "sim", "build.py"), "--out", out_dir], check=True, capture_output=True)
    for order in ORDERS:
        caught, why = run_tests(binary, out_dir, all_filters, order)
        if caught:
            sys.exit(f"control run fails under {order}: {why}")
    lines.append(f"control: the unmutated kernels pass {', '.join(all_filters)} under orders {', '.join(ORDERS)}")
    lines.append("")

    failures = 0
    for name, fname, old, new, filters, what in MUTATIONS:
        if args.only not in name:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            kdir = os.path.join(tmp, "kernels")
            shutil.copytree(os.path.join(ROOT, "kernels"), kdir)
            path = os.path.join(kdir, fname)
            text = open(path).read()
            if text.count(old) != 1:
                sys.exit(f"{name}: the text to mutate occurs {text.count(old)} times in kernels/{fname}")
            open(path, "w").write(text.replace(old, new))
            subprocess.run([sys.executable, os.path.join(ROOT, "sim", "build.py"), "--kernels", kdir, "--out", out_dir],
                           check=True, capture_output=True)
            results = {order: run_tests(binary, out_dir, filters, order) for order in ORDERS}
        caught_by = [o for o, (c, _) in results.items() if c]
        failures += not caught_by
        lines.append(f"{name}: {what} (kernels/{fname}; tests {', '.join(filters)})")
        for order, (caught, why) in results.items():
            lines.append(f"    {order:8} {'CAUGHT' if caught else 'missed'}{': ' + why if caught else ''}")
        print("\n".join(lines[-(len(ORDERS) + 1):]), flush=True)
    lines.append("")
    lines.append("every planted bug was caught by at least one order" if failures == 0 else f"{failures} planted bug(s) were missed by every order")
    with open(args.report, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.report}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
