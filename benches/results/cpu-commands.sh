# How benches/results/*-cpu.json were made (2026-11-23, this project's 2-core CPU machine, no GPU;
# PyTorch 2.15 CPU in a venv outside the repository).
python tools/bench_torch.py --device cpu --threads 2 --ops conv2d,attention,group_norm --json benches/results/torch-cpu.json
cargo bench --bench conv      -- --device cpu --torch benches/results/torch-cpu.json --json benches/results/conv-cpu.json
cargo bench --bench attention -- --device cpu --torch benches/results/torch-cpu.json --json benches/results/attention-cpu.json
cargo bench --bench norm      -- --device cpu --torch benches/results/torch-cpu.json --json benches/results/norm-cpu.json

# Issue 20 (2026-12-03, same machine, shared with other sessions' compilers; models made once with
# `/work/venv/bin/python tools/reference/bench_cpu_torch.py --make /tmp/cpu-bench`). The binary
# was commit 795a9a5 (the JSON says -dirty: docs were being edited, no code).
/work/venv/bin/python tools/reference/bench_cpu_torch.py --run /tmp/cpu-bench --rows vae,dit --rounds 3 --warmup 1 --iters 2 --json benches/results/cpu-vs-torch.json
/work/venv/bin/python tools/reference/bench_cpu_torch.py --run /tmp/cpu-bench --rows unet-up1,unet --rounds 3 --warmup 1 --iters 2 --json benches/results/cpu-vs-torch-unet.json
# The retain-freed-memory change, interleaved against the binary before it (0a47149):
benches/results/cpu-pairs.sh benches/results/cpu-pairs/vae-retain 3 'retain=/tmp/cpufast-bin/revelio-retain' 'before=/tmp/cpufast-bin/revelio-vmath' -- --model /tmp/cpu-bench/vae --vae encode --batch-size 1 --resolution 256 --warmup 1 --iters 3 --profile

# benches/results/generate-cpu.json (2026-12-03, the same machine, with other builds running on it,
# load about 5 (in the JSON): both sides timed in the same run; revelio is target/release/revelio
# built at commit 6df6622, copied to /tmp so that a rebuild could not replace it mid-run).
P=/work/venv/bin/python S=tools/reference/bench_generate_torch.py X=/tmp/gb
$P $S --make $X && $P $S --run $X --images 4 --revelio-bin /tmp/revelio-bench
cp $X/bench_generate.json benches/results/generate-cpu.json
