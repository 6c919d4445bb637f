#!/usr/bin/env bash
# Interleaved A/B runs of `revelio bench` on the CPU: PAIRS rounds of (A, B) in turn (B first in
# odd rounds), each one process, its JSON (every timed forward's time, the profile when asked)
# written to OUT/<label>-<round>.json, then each side's median of all samples and the median of
# the per-round ratios printed. A and B are "LABEL=ENV... BINARY" strings (ENV may be empty).
#   benches/results/cpu-pairs.sh OUT PAIRS 'A' 'B' -- BENCH-ARGS...
set -euo pipefail
out=$1 pairs=$2 a=$3 b=$4
shift 5
mkdir -p "$out"
run() { # run SPEC ROUND ARGS...
    local spec=$1 r=$2; shift 2
    local label=${spec%%=*} cmd=${spec#*=}
    # shellcheck disable=SC2086
    env RAYON_NUM_THREADS=2 $cmd bench --device cpu --json "$out/$label-$r.json" "$@" >"$out/$label-$r.log" 2>&1
}
for r in $(seq 1 "$pairs"); do
    if (( r % 2 )); then run "$a" "$r" "$@"; run "$b" "$r" "$@"; else run "$b" "$r" "$@"; run "$a" "$r" "$@"; fi
done
python3 - "$out" "${a%%=*}" "${b%%=*}" <<'PY'
import glob, json, statistics, sys
out, la, lb = sys.argv[1:]
def load(label):
    runs = sorted(glob.glob(f"{out}/{label}-*.json"), key=lambda p: int(p.rsplit("-", 1)[1][:-5]))
    return [json.load(open(p)) for p in runs]
A, B = load(la), load(lb)
for label, runs in ((la, A), (lb, B)):
    t = [x for r in runs for x in r["times_ms"]]
    print(f"{label}: median {statistics.median(t):.0f} ms, min {min(t):.0f}, max {max(t):.0f}, spread {(max(t)-min(t))/statistics.median(t):.2f} over {len(t)} forwards")
ratios = [statistics.median(x["times_ms"]) / statistics.median(y["times_ms"]) for x, y in zip(A, B)]
print(f"{la}/{lb} per round: {' '.join(f'{q:.2f}' for q in ratios)}; median {statistics.median(ratios):.2f}")
PY
