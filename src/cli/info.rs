//! `revelio info` (the version, how kernels are built, the GPUs found) and `revelio kernels`
//! (every kernel compiled by NVRTC, with its ptxas report).

use crate::cuda::{self, compile, nvrtc, Probe};
use std::process::ExitCode;

fn gib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

pub fn info() -> ExitCode {
    println!("revelio {}", env!("CARGO_PKG_VERSION"));
    match nvrtc::version() {
        Ok(((ma, mi), path)) => println!(
            "kernels: compiled at first use by NVRTC {ma}.{mi} ({}), cubins cached in {}",
            path.display(),
            compile::cache_dir().display()
        ),
        Err(e) => println!("kernels: unavailable ({e})"),
    }
    match cuda::cublas::location() {
        Ok(p) => println!("cuBLAS: {p}"),
        Err(e) => println!("cuBLAS: unavailable ({e})"),
    }
    match cuda::probe() {
        Probe::Devices(devs) => {
            let driver = cuda::driver_version().map(|(a, b)| format!("driver CUDA {a}.{b}")).unwrap_or_default();
            let list: Vec<String> = devs
                .iter()
                .map(|d| {
                    format!(
                        "cuda:{} {} ({:.1} GiB, {}, {} SMs)",
                        d.ordinal,
                        d.name,
                        gib(d.total_memory),
                        d.arch(),
                        d.multiprocessors
                    )
                })
                .collect();
            println!("devices: {} [{driver}]", list.join("; "));
            if let Some(Ok(sim)) = cuda::sim::simulator() {
                println!("!!! SIMULATED DEVICE ({}={}): every CUDA kernel runs as host code on the CPU.", cuda::sim::ENV, sim.dir.display());
                println!("!!! It checks results, not speed; timings on it mean nothing. Settings: {}.", sim.description);
            }
        }
        other => println!("devices: none: {}; --device auto runs on the CPU", other.reason()),
    }
    println!("nvtx: {}", if cuda::nvtx::enabled() { "on" } else { "off (libnvToolsExt not found)" });
    ExitCode::SUCCESS
}

pub fn kernels(archs: &[String]) -> ExitCode {
    if let Err(e) = nvrtc::version() {
        eprintln!("revelio kernels: {e}");
        eprintln!("hint: pip install --target DIR nvidia-cuda-nvrtc-cu12, then set REVELIO_PY_SITE=DIR");
        return ExitCode::FAILURE;
    }
    let reports = compile::check_all(archs);
    println!("{:<7} {:<16} {:<36} {:>5} {:>7} {:>6} {:>7}", "arch", "module", "kernel", "regs", "smem", "stack", "spills");
    let mut problems = Vec::new();
    let mut count = 0;
    for r in &reports {
        for k in &r.kernels {
            count += 1;
            println!(
                "{:<7} {:<16} {:<36} {:>5} {:>7} {:>6} {:>7}",
                r.arch,
                r.module.file_name(),
                k.name,
                k.registers,
                k.shared_bytes,
                k.stack_bytes,
                k.spill_stores + k.spill_loads
            );
        }
        problems.extend(r.problems.iter().map(|p| format!("{} {}: {p}", r.arch, r.module.file_name())));
    }
    println!("{count} kernels compiled for {}", archs.join(", "));
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        eprintln!("{} problem(s)", problems.len());
        ExitCode::FAILURE
    }
}

