#!/usr/bin/env python3
"""Builds the simulated CUDA device: target/sim/libcuda.so and libcublas.so.12.

    python3 sim/build.py            # target/sim (about a minute on 2 cores, then incremental)
    python3 sim/build.py --asan     # target/sim-asan, with AddressSanitizer and UBSan
    python3 sim/build.py --test     # and run sim/tests (PTX fragment tables)

Every kernels/*.cu is compiled unmodified as host C++: this script copies each source (and
kernels/*.cuh) to <out>/gen with three mechanical rewrites a header cannot do, and a `#line`
so that diagnostics name the original file and line:
  - `asm("template" : outputs : inputs)` becomes a call into the simulator's PTX interpreter
    (sim/src/ptx.cpp), with a `PtxSite` for the template declared once per file;
  - `__shared__ T x[N];` becomes a reference to per-block storage, `extern __shared__ T x[];`
    a pointer to the launch's dynamic buffer;
  - `__global__` becomes RSIM_GLOBAL, so a preprocessor pass can list the kernels, which are
    then registered by name with a thunk that unpacks cuLaunchKernel's parameter array.
The library records the kernels/ folder and a hash of its files; loading a module fails when
they have changed since (the simulator would run other code than the binary's cubins).

Use it: REVELIO_SIM=target/sim revelio info (README, "Simulated GPU").
"""

import argparse
import concurrent.futures
import hashlib
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIM = os.path.join(ROOT, "sim")
RUNTIME = ["exec.cpp", "fiber.cpp", "ptx.cpp", "module.cpp", "driver.cpp", "options.cpp", "host.cpp"]
CUBLAS = ["cublas.cpp"]
TESTS = ["fragments"]


def fnv1a(files):
    """FNV-1a 64 over name, NUL, content, NUL of each file: driver.cpp computes the same."""
    h = 0xCBF29CE484222325
    for name, data in files:
        for b in name.encode() + b"\0" + data + b"\0":
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


# ---------------------------------------------------------------- rewriting


def skip_string(text, i):
    """Index just past the string or char literal starting at text[i]."""
    q = text[i]
    i += 1
    while text[i] != q:
        i += 2 if text[i] == "\\" else 1
    return i + 1


def matching_paren(text, i):
    """Index of the ')' closing the '(' at text[i]."""
    depth = 0
    while True:
        c = text[i]
        if c in "\"'":
            i = skip_string(text, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1


def split_top(text, sep):
    """Splits on `sep` outside parentheses, brackets and literals."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        if c in "\"'":
            i = skip_string(text, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


OPERAND = re.compile(r'^\s*"([^"]*)"\s*\((.*)\)\s*$', re.S)


def rewrite_asm(body, site, where, in_macro):
    """The arguments of asm(...) as a PtxSite declaration and a run() call; inside a macro
    the site is a function-local static instead (its template may use macro parameters)."""
    sections = split_top(body.replace("\\\n", " "), ":")
    tmpl = sections[0].strip()
    if not tmpl.startswith('"'):
        sys.exit(f"{where}: asm template is not a string literal")
    ops = []
    for kind, section in (("out", sections[1] if len(sections) > 1 else ""), ("in", sections[2] if len(sections) > 2 else "")):
        for operand in split_top(section, ","):
            if not operand.strip():
                continue
            m = OPERAND.match(operand)
            if not m:
                sys.exit(f"{where}: cannot read asm operand `{operand.strip()}`")
            constraint, expr = m.group(1), m.group(2).strip()
            if kind == "in":
                ops.append(f"::rsim::asm_in({expr})")
            elif constraint.startswith("+"):
                ops.append(f"::rsim::asm_inout(&({expr}))")
            else:
                ops.append(f"::rsim::asm_out(&({expr}))")
    if in_macro:
        return None, f'[] {{ static const ::rsim::PtxSite s({tmpl}, "{where}"); return &s; }}()->run({{{", ".join(ops)}}})'
    decl = f'static const ::rsim::PtxSite {site}({tmpl}, "{where}");'
    call = f"{site}.run({{{', '.join(ops)}}})"
    return decl, call


ASM = re.compile(r"\basm\b(\s+volatile)?\s*\(")
SHARED = re.compile(r"(?P<ext>extern\s+)?__shared__\s+(?:__align__\s*\(\s*(?P<align>\d+)\s*\)\s+)?(?P<decl>[^;]*);")
DECLARATOR = re.compile(r"^(?P<type>.*?)\s*\b(?P<name>\w+)\s*(?P<dims>(?:\[[^\]]*\]\s*)*)$", re.S)


def rewrite(text, relpath, stem, counter):
    """The host-C++ form of one kernel source (see the module docstring)."""
    decls = []
    out, i = [], 0
    for m in ASM.finditer(text):
        if m.start() < i:
            continue
        open_paren = m.end() - 1
        close = matching_paren(text, open_paren)
        line = text.count("\n", 0, m.start()) + 1
        line_end = text.find("\n", m.start())
        in_macro = text[:line_end].rstrip().endswith("\\")
        site = f"rsim_ptx_{stem}_{len(decls)}"
        decl, call = rewrite_asm(text[open_paren + 1 : close], site, f"{relpath}:{line}", in_macro)
        if decl:
            decls.append(decl)
        # Keep the line count (and a macro's line continuations) so #line stays true.
        span = text[m.start() : close + 1]
        pad = "".join(" \\\n" if span[j - 1] == "\\" else "\n" for j in range(len(span)) if span[j] == "\n")
        out.append(text[i : m.start()])
        out.append(call + pad)
        i = close + 1
    out.append(text[i:])
    text = "".join(out)

    def shared(m):
        line_start = text.rfind("\n", 0, m.start()) + 1
        parts = split_top(m.group("decl"), ",")
        first = DECLARATOR.match(parts[0].strip())
        if not first or not first.group("type"):
            sys.exit(f"{relpath}: cannot read `{m.group(0)}`")
        typ = first.group("type").strip()
        out = []
        for k, part in enumerate(parts):
            d = first if k == 0 else DECLARATOR.match(part.strip())
            if not d or (k > 0 and d.group("type")):
                sys.exit(f"{relpath}: cannot read `{m.group(0)}`")
            name, dims = d.group("name"), d.group("dims").replace(" ", "")
            if m.group("ext"):
                if dims != "[]":
                    sys.exit(f"{relpath}: extern __shared__ {name} must be an unsized array")
                if m.start() == line_start:  # file scope: every use reads the running block's buffer
                    out.append(f"#define {name} (static_cast<{typ}*>(::rsim::shared_dynamic()))")
                else:
                    out.append(f"{typ}* const {name} = static_cast<{typ}*>(::rsim::shared_dynamic());")
                continue
            align = m.group("align") or "1"
            counter[0] += 1
            size = f"sizeof({typ}{dims})"
            alignment = f"({align} > alignof({typ}) ? {align} : alignof({typ}))"
            storage = f"::rsim::shared_static({counter[0]}, {size}, {alignment})"
            if dims:
                out.append(f"{typ}(&{name}){dims} = *static_cast<{typ}(*){dims}>({storage});")
            else:
                out.append(f"{typ}& {name} = *static_cast<{typ}*>({storage});")
        return " ".join(out)

    text = SHARED.sub(shared, text)
    if "__shared__" in text:
        sys.exit(f"{relpath}: a __shared__ declaration this script cannot read")
    text = re.sub(r"\b__global__\b", "RSIM_GLOBAL", text)
    head = ""
    if "#pragma once" in text:
        head = "#pragma once\n"
    return head + "\n".join(decls) + ("\n" if decls else "") + f'#line 1 "{relpath}"\n' + text


# ---------------------------------------------------------------- building


def run(cmd, cwd=None):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(" ".join(cmd) + "\n" + r.stdout + r.stderr)
        sys.exit(f"build failed: {os.path.basename(cmd[-1])}")
    return r.stdout


def write_if_changed(path, text):
    if os.path.exists(path) and open(path).read() == text:
        return
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def compile_all(jobs, cxx, flags, units, obj_dir, extra_inputs):
    """Compiles (source, object, own inputs) units whose inputs changed (the flags, the source, the
    files it alone includes, every shared header); returns the object paths."""
    stamp_extra = "".join(open(p).read() for p in sorted(extra_inputs))

    def one(unit):
        src, obj, own = unit
        text = open(src).read() + "".join(open(p).read() for p in own)
        key = hashlib.sha256((" ".join(flags) + text + stamp_extra).encode()).hexdigest()
        stamp = obj + ".key"
        if os.path.exists(obj) and os.path.exists(stamp) and open(stamp).read() == key:
            return obj
        run([cxx] + flags + ["-c", "-o", obj, src])
        write_if_changed(stamp, key)
        return obj

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        return list(ex.map(one, units))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--asan", action="store_true", help="AddressSanitizer + UBSan build (default out: target/sim-asan)")
    ap.add_argument("--kernels", default=os.path.join(ROOT, "kernels"), help="kernel sources (default: kernels/)")
    ap.add_argument("--out", help="output folder (default: target/sim or target/sim-asan)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--cxx", default=os.environ.get("CXX", "g++"))
    ap.add_argument("--test", action="store_true", help="build and run sim/tests")
    args = ap.parse_args()

    out = os.path.abspath(args.out or os.path.join(ROOT, "target", "sim-asan" if args.asan else "sim"))
    kdir = os.path.abspath(args.kernels)
    gen, obj = os.path.join(out, "gen"), os.path.join(out, "obj")
    os.makedirs(gen, exist_ok=True)
    os.makedirs(obj, exist_ok=True)

    lang = ["-std=gnu++20", "-I", os.path.join(SIM, "include"), "-I", os.path.join(SIM, "src"), "-I", gen]
    flags = lang + ["-fPIC", "-fno-strict-aliasing", "-ffp-contract=off", "-fvisibility=hidden", "-ftls-model=initial-exec", "-g1", "-Wall",
                    "-Wno-unknown-pragmas", "-Wno-unused-function", "-Wno-unused-variable", "-Wno-unused-but-set-variable"]
    if args.asan:
        flags += ["-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
    else:
        flags += ["-O2", "-march=native"]

    # Rewrite kernels/ into gen/.
    sources = sorted(n for n in os.listdir(kdir) if n.endswith((".cu", ".cuh")))
    counter = [0]
    for name in sources:
        stem = re.sub(r"\W", "_", name)
        text = open(os.path.join(kdir, name)).read()
        write_if_changed(os.path.join(gen, name), rewrite(text, f"kernels/{name}", stem, counter))
    src_hash = fnv1a([(n, open(os.path.join(kdir, n), "rb").read()) for n in sources])

    # One translation unit per module: the rewritten source, then its kernels' registrations.
    def module_unit(name, relname):
        body = os.path.join(gen, name + ".body.cpp")
        write_if_changed(body, f'#include "rsim.h"\n#include "{name}"\n')
        listing = run([args.cxx, "-E", "-P", "-DRSIM_GLOBAL=RSIM_KERNEL_MARK"] + lang + [body])
        kernels = sorted(set(re.findall(r"RSIM_KERNEL_MARK\s+void\s+(\w+)\s*\(", listing)))
        if not kernels:
            sys.exit(f"{relname}: no kernels found")
        regs = []
        for i, k in enumerate(kernels):
            sig = f"::rsim::Signature<decltype(&{k})>"
            regs.append(f'::rsim::KernelReg rsim_kernel_{i}("{name}", "{k}", &{sig}::thunk<&{k}>, {sig}::count, {sig}::bytes);')
        tu = os.path.join(gen, name + ".cpp")
        write_if_changed(tu, f'#include "{name}.body.cpp"\nnamespace {{\n' + "\n".join(regs) + "\n}  // namespace\n")
        return (tu, os.path.join(obj, name + ".o"), [os.path.join(gen, name)]), kernels

    units, all_kernels = [], []
    for name in sources:
        if name.endswith(".cu"):
            unit, kernels = module_unit(name, f"kernels/{name}")
            units.append(unit)
            all_kernels += kernels
    info = os.path.join(gen, "build_info.cpp")
    write_if_changed(info, "namespace rsim {\n"
                     f'extern const char* const kernel_dir = "{kdir}";\n'
                     f'extern const char* const kernel_hash = "{src_hash}";\n'
                     "}  // namespace rsim\n")
    runtime = [(info, os.path.join(obj, "build_info.o"), [])] + [(os.path.join(SIM, "src", s), os.path.join(obj, s + ".o"), []) for s in RUNTIME]
    headers = [os.path.join(SIM, "include", "rsim.h")] + [os.path.join(SIM, "src", h) for h in os.listdir(os.path.join(SIM, "src")) if h.endswith(".h")]
    headers += [os.path.join(gen, n) for n in sources if n.endswith(".cuh")]
    objects = compile_all(args.jobs, args.cxx, flags, units + runtime, obj, headers)
    runtime_objs = objects[len(units):]
    cublas_objs = compile_all(args.jobs, args.cxx, flags, [(os.path.join(SIM, "src", s), os.path.join(obj, s + ".o"), []) for s in CUBLAS], obj, headers)

    link = [args.cxx, "-shared"] + (["-fsanitize=address,undefined"] if args.asan else [])
    run(link + ["-Wl,-soname,libcuda.so", "-o", os.path.join(out, "libcuda.so")] + objects + ["-lpthread", "-ldl"])
    run(link + ["-Wl,-soname,libcublas.so.12", "-o", os.path.join(out, "libcublas.so.12")] + cublas_objs + ["-lpthread"])
    write_if_changed(os.path.join(out, "kernels.txt"), "\n".join(sorted(all_kernels)) + "\n")
    print(f"revelio-sim: {len(all_kernels)} kernels from {len([s for s in sources if s.endswith('.cu')])} modules -> {out}")

    if args.test:
        # A test is a kernel module of its own plus a main(), linked with the runtime itself.
        for t in TESTS:
            name = t + ".cu"
            text = open(os.path.join(SIM, "tests", name)).read()
            write_if_changed(os.path.join(gen, name), rewrite(text, f"sim/tests/{name}", t, counter))
            unit, _ = module_unit(name, f"sim/tests/{name}")
            (o,) = compile_all(args.jobs, args.cxx, flags, [unit], obj, headers)
            exe = os.path.join(out, t)
            run([args.cxx] + (["-fsanitize=address,undefined"] if args.asan else []) + ["-o", exe, o] + runtime_objs + ["-lpthread", "-ldl"])
            if subprocess.run([exe]).returncode != 0:
                sys.exit(f"sim/tests/{name} failed")


if __name__ == "__main__":
    main()
