#!/usr/bin/env bash
# Builds, on a machine with Rust, everything a GPU session runs on a machine without it: the
# revelio binary, the GPU test binary and the bench binaries, stripped, into target/device/
# (about 22 MB: small enough to carry). The test and bench binaries find tests/fixtures/ and
# benches/shapes.json through the repository path they were built in (CARGO_MANIFEST_DIR), saved
# in target/device/MANIFEST_DIR; on the GPU machine, run from the copy of the repository:
#
#   d=$(cat target/device/MANIFEST_DIR); mkdir -p "$(dirname "$d")"; [ -e "$d" ] || ln -s "$PWD" "$d"
#   target/device/gpu --include-ignored --test-threads 1              # tests/gpu.rs
#   target/device/bench-conv --device cuda --dtype bf16 --json "$OUT/conv-cuda.json"
#   target/device/revelio info
#
# (the benches take the arguments that follow `--` in `cargo bench --bench NAME -- ...`;
# README "GPU tests and benches" lists them). The binaries need only glibc: if the GPU machine's is older than this
# machine's, build there instead.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/device
rm -rf "$out"
mkdir -p "$out"

cargo build --release --locked
strip -o "$out/revelio" target/release/revelio

# The executables of kind $1 (test or bench) that `cargo $2...` builds.
executables() {
    local kind=$1
    shift
    cargo "$@" --locked --no-run --message-format=json 2>/dev/null |
        KIND=$kind python3 -c 'import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and os.environ["KIND"] in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])'
}
executables test test --release --test gpu | while read -r name exe; do strip -o "$out/$name" "$exe"; done
for b in conv attention norm sae; do
    executables bench bench --bench "$b" | while read -r name exe; do strip -o "$out/bench-$name" "$exe"; done
done

pwd > "$out/MANIFEST_DIR"
ls -l "$out"
du -sh "$out"
