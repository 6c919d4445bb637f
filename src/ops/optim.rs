//! Adam and AdamW, exactly as torch.optim.Adam / AdamW (non-amsgrad, not maximising), updating
//! f32 parameters and state in place. The per-step scalars (bias corrections, step size) are
//! computed in f64 on the host and rounded to f32 once (`AdamScalars`); both backends then run
//! torch's per-element order of operations:
//!   g += wd * p                      (Adam with weight_decay)
//!   p *= 1 - lr * wd                 (AdamW)
//!   m = b1 * m + (1 - b1) * g
//!   v = b2 * v + (1 - b2) * g * g
//!   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),  bc_i = 1 - b_i^step

use super::{check_same_device, check_same_dtype};
use crate::cuda;
use crate::tensor::{DType, Device, Tensor};
use crate::{ensure_op, Result};
pub use crate::plan::optim::{AdamConfig, AdamScalars};

/// One parameter's optimizer state: first and second moments (f32, the parameter's shape) and
/// the number of steps taken.
#[derive(Debug, Clone)]
pub struct AdamState {
    pub m: Tensor,
    pub v: Tensor,
    pub step: u64,
}

impl AdamState {
    /// Zero moments like `param` (f32, on its device), step 0.
    pub fn new(param: &Tensor) -> Result<Self> {
        ensure_op!(param.dtype() == DType::F32, "AdamState::new", "param {} must be f32, got {}", param.shape(), param.dtype());
        let zeros = || Tensor::zeros(param.shape().clone(), DType::F32, &param.device());
        Ok(AdamState { m: zeros()?, v: zeros()?, step: 0 })
    }
}

/// One Adam(W) step in place. param, grad, state.m, state.v: f32, one shape, one device.
/// Increments state.step (only when the step is taken).
pub fn adam_step(param: &mut Tensor, grad: &Tensor, state: &mut AdamState, cfg: &AdamConfig) -> Result<()> {
    let _p = crate::profile::op("adam_step");
    let op = "adam_step";
    check_same_device(op, &[param, grad, &state.m, &state.v])?;
    check_same_dtype(op, &[param, grad, &state.m, &state.v])?;
    ensure_op!(param.dtype() == DType::F32, op, "param {} must be f32, got {}", param.shape(), param.dtype());
    for (name, t) in [("grad", grad), ("state.m", &state.m), ("state.v", &state.v)] {
        ensure_op!(t.shape() == param.shape(), op, "{name} {} and param {} differ in shape", t.shape(), param.shape());
    }
    ensure_op!(
        (0.0..1.0).contains(&cfg.beta1) && (0.0..1.0).contains(&cfg.beta2),
        op,
        "betas ({}, {}) must be in [0, 1) (param {})",
        cfg.beta1,
        cfg.beta2,
        param.shape()
    );
    let step = state.step + 1;
    let s = AdamScalars::new(cfg, step);
    match param.device() {
        Device::Cpu => crate::cpu::optim::adam_step(param, grad, &mut state.m, &mut state.v, &s)?,
        Device::Cuda(d) => cuda::optim::adam_step(&d, param, grad, &mut state.m, &mut state.v, &s)?,
    }
    state.step = step;
    Ok(())
}
