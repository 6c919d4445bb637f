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

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW's decoupled decay (p *= 1 - lr * wd) instead of Adam's (g += wd * p).
    pub decoupled_weight_decay: bool,
}

impl AdamConfig {
    /// torch.optim.Adam's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn adam(lr: f32) -> Self {
        AdamConfig { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled_weight_decay: false }
    }

    /// torch.optim.AdamW's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
    pub fn adamw(lr: f32) -> Self {
        AdamConfig { weight_decay: 0.01, decoupled_weight_decay: true, ..AdamConfig::adam(lr) }
    }
}

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

/// The f64 that the shortest decimal of `x` denotes: 0.999f32 -> 0.999, the value torch's
/// Python floats hold (widening 0.999f32 gives 0.99899999..., which would move 1 - beta2 by
/// 5e-5 relative).
fn decimal_f64(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// The f32 scalars of one Adam step (see the module comment), computed in f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamScalars {
    /// wd for Adam's coupled decay, else 0.
    pub grad_decay: f32,
    /// 1 - lr * wd for AdamW, else 1.
    pub param_scale: f32,
    pub beta1: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    /// lr / (1 - beta1^step).
    pub step_size: f32,
    /// sqrt(1 - beta2^step).
    pub bc2_sqrt: f32,
    pub eps: f32,
}

impl AdamScalars {
    /// The scalars for step number `step` (>= 1).
    pub fn new(cfg: &AdamConfig, step: u64) -> Self {
        let (lr, b1, b2, wd) = (decimal_f64(cfg.lr), decimal_f64(cfg.beta1), decimal_f64(cfg.beta2), decimal_f64(cfg.weight_decay));
        let t = step.min(i32::MAX as u64) as i32;
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        let (grad_decay, param_scale) =
            if cfg.decoupled_weight_decay { (0.0, (1.0 - lr * wd) as f32) } else { (cfg.weight_decay, 1.0) };
        AdamScalars {
            grad_decay,
            param_scale,
            beta1: cfg.beta1,
            one_minus_beta1: (1.0 - b1) as f32,
            beta2: cfg.beta2,
            one_minus_beta2: (1.0 - b2) as f32,
            step_size: (lr / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            eps: cfg.eps,
        }
    }
}

/// One Adam(W) step in place. param, grad, state.m, state.v: f32, one shape, one device.
/// Increments state.step (only when the step is taken).
pub fn adam_step(param: &mut Tensor, grad: &Tensor, state: &mut AdamState, cfg: &AdamConfig) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_use_the_decimal_hyperparameters() {
        assert_eq!(decimal_f64(0.999), 0.999f64);
        assert_eq!(decimal_f64(1e-3), 1e-3f64);
        let s = AdamScalars::new(&AdamConfig::adamw(1e-3), 1);
        assert_eq!(s.one_minus_beta2, (1.0f64 - 0.999) as f32);
        assert_eq!(s.step_size, (1e-3f64 / (1.0 - 0.9)) as f32);
        assert_eq!(s.param_scale, (1.0f64 - 1e-3 * 0.01) as f32);
        assert_eq!(s.grad_decay, 0.0);
        let s = AdamScalars::new(&AdamConfig { weight_decay: 0.1, ..AdamConfig::adam(1e-2) }, 2);
        assert_eq!((s.grad_decay, s.param_scale), (0.1, 1.0));
        assert_eq!(s.bc2_sqrt, (1.0f64 - 0.999f64.powi(2)).sqrt() as f32);
    }
}
