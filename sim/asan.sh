#!/usr/bin/env bash
# Nightly-style check: tests/gpu on the simulated device built with AddressSanitizer and UBSan
# (target/sim-asan). They catch out-of-bounds and misaligned accesses to device memory (every
# allocation is its own heap block here), use after free, and undefined arithmetic in the
# kernels and the simulator. Slower than the plain simulator; arguments go to the test binary:
#
#     bash sim/asan.sh               # every GPU test
#     bash sim/asan.sh conv::        # one family
set -euo pipefail
cd "$(dirname "$0")/.."
python3 sim/build.py --asan
bin=$(cargo test --release --locked --test gpu --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "gpu":
        print(m["executable"])')
export REVELIO_PY_SITE="${REVELIO_PY_SITE:-$PWD/.ci/py}"
export REVELIO_SIM="$PWD/target/sim-asan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
LD_PRELOAD="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)" "$bin" --include-ignored --test-threads 1 "$@"
