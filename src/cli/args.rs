//! What the commands parse alike: `--device`, the dtype flags, `--shard i/n`.

use crate::tensor::{DType, Device};
use crate::{Error, Result};

/// `--device`: auto, cpu, cuda or cuda:N.
pub fn device(s: &str) -> Result<Device> {
    Device::parse(s)
}

/// A storage dtype (`flag` names the option in the error): f32, f16 or bf16.
pub fn float_dtype(flag: &str, s: &str) -> Result<DType> {
    DType::parse(s).filter(|d| d.is_float()).ok_or_else(|| Error::BadOption(format!("{flag} {s}: expected f32, f16 or bf16")))
}

/// The dtype models compute in: f32, f16 or bf16, the 16-bit ones on CUDA only (the CPU
/// backend computes in f32).
pub fn compute_dtype(flag: &str, s: &str, device: &Device) -> Result<DType> {
    let dtype = float_dtype(flag, s)?;
    if device.is_cpu() && dtype != DType::F32 {
        return Err(Error::BadOption(format!("{flag} {s}: the CPU backend runs f32 only; use {flag} f32 or a CUDA device")));
    }
    Ok(dtype)
}

/// `--shard i/n` (1-based, as a Slurm array counts) -> (i - 1, n).
pub fn shard(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::BadOption(format!("--shard {s}: expected i/n with 1 <= i <= n (e.g. $SLURM_ARRAY_TASK_ID/8)"));
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if i == 0 || i > n {
        return Err(bad());
    }
    Ok((i - 1, n))
}

/// A duration in seconds, as the summaries print it.
pub fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}
