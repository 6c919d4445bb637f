# How benches/results/*-cpu.json were made (2026-11-23, this project's 2-core CPU machine, no GPU;
# PyTorch 2.15 CPU in a venv outside the repository).
python tools/bench_torch.py --device cpu --threads 2 --ops conv2d,attention,group_norm --json benches/results/torch-cpu.json
cargo bench --bench conv      -- --device cpu --torch benches/results/torch-cpu.json --json benches/results/conv-cpu.json
cargo bench --bench attention -- --device cpu --torch benches/results/torch-cpu.json --json benches/results/attention-cpu.json
cargo bench --bench norm      -- --device cpu --torch benches/results/torch-cpu.json --json benches/results/norm-cpu.json
