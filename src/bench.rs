//! Timing and ceilings shared by `revelio bench` and benches/: device events on a GPU (wall
//! clock on the CPU), warm-up, median and spread, and the two measured ceilings every floor is
//! counted against (a large GEMM's matrix rate and the copy bandwidth).

use crate::ops;
use crate::tensor::{DType, Device, Tensor};
use crate::Result;
use std::time::Instant;

/// Median, min and max of the timed runs, and every run in order, in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub times_ms: Vec<f64>,
}

impl Stats {
    pub fn from_times(times_ms: Vec<f64>) -> Stats {
        let mut v = times_ms.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        Stats { median_ms: v[v.len() / 2], min_ms: v[0], max_ms: v[v.len() - 1], times_ms }
    }
}

/// The host memory high-water mark: the largest resident size this process reached (VmHWM)
/// since it started or since the last `reset_host_peak`, in bytes; None where /proc is missing.
pub fn host_peak_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resets the high-water mark `host_peak_bytes` reads to the current resident size (Linux's
/// /proc/self/clear_refs); false where that is not possible.
pub fn reset_host_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Times `f` `iters` times after `warmup` runs: device events around each run on a GPU (each
/// run's output is dropped after its stop event), wall clock on the CPU.
pub fn time<T>(device: &Device, warmup: usize, iters: usize, mut f: impl FnMut() -> Result<T>) -> Result<Stats> {
    for _ in 0..warmup {
        drop(f()?);
    }
    device.synchronize()?;
    let mut times = Vec::with_capacity(iters.max(1));
    for _ in 0..iters.max(1) {
        match device {
            Device::Cuda(d) => {
                let start = d.record_event()?;
                let out = f()?;
                let stop = d.record_event()?;
                stop.synchronize()?;
                times.push(start.elapsed_ms(&stop)? as f64);
                drop(out);
            }
            Device::Cpu => {
                let t0 = Instant::now();
                let out = f()?;
                times.push(t0.elapsed().as_secs_f64() * 1e3);
                drop(out);
            }
        }
    }
    Ok(Stats::from_times(times))
}

/// The two ceilings every floor is counted against, measured on this device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ceilings {
    /// Dense matrix rate of a large GEMM in `dtype` (cuBLAS on a GPU, the gemm crate on the CPU).
    pub matrix_tflops: f64,
    /// Device-to-device copy bandwidth, counting bytes read plus bytes written.
    pub copy_gbps: f64,
}

impl Ceilings {
    /// The floor of an op: the larger of its FLOPs at the matrix rate and its bytes at the
    /// copy bandwidth, in milliseconds.
    pub fn floor_ms(&self, flops: f64, bytes: f64) -> f64 {
        (flops / (self.matrix_tflops * 1e12)).max(bytes / (self.copy_gbps * 1e9)) * 1e3
    }
}

pub fn measure_ceilings(device: &Device, dtype: DType) -> Result<Ceilings> {
    let n = if device.is_cpu() { 1024 } else { 8192 };
    let a = ops::to_dtype(&Tensor::randn([n, n], 1, device)?, dtype)?;
    let b = ops::to_dtype(&Tensor::randn([n, n], 2, device)?, dtype)?;
    let t = time(device, 2, 10, || ops::gemm::matmul(&a, &b))?;
    let matrix_tflops = 2.0 * (n as f64).powi(3) / (t.median_ms * 1e-3) / 1e12;
    let elems: usize = if device.is_cpu() { 1 << 24 } else { 1 << 28 };
    let x = ops::to_dtype(&Tensor::randn([elems], 3, device)?, dtype)?;
    let t = time(device, 2, 10, || x.deep_clone())?;
    let copy_gbps = 2.0 * (elems * dtype.size_in_bytes()) as f64 / (t.median_ms * 1e-3) / 1e9;
    Ok(Ceilings { matrix_tflops, copy_gbps })
}
