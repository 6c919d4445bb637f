//! Dropout with masks from the counter-based generator: element (or channel) i is kept iff
//! `rng::uniform(seed, i) >= p`, so the mask is a pure function of (seed, i), identical on the
//! CPU and the GPU, and the backward recomputes it instead of storing it.

use super::check_float;
use crate::cuda;
use crate::tensor::{Device, Tensor};
use crate::{ensure_op, Result};
pub use crate::plan::dropout::{DropoutKind, DropoutPlan};

fn plan(op: &'static str, x: &Tensor, p: f32, seed: u64, kind: DropoutKind) -> Result<DropoutPlan> {
    check_float(op, x)?;
    ensure_op!((0.0..1.0).contains(&p), op, "p = {p} must be in [0, 1) (x {})", x.shape());
    let group = match kind {
        DropoutKind::Elementwise => 1,
        DropoutKind::Channels => {
            ensure_op!(x.rank() >= 2, op, "channel dropout needs x [N, C, *], got {}", x.shape());
            x.dims()[2..].iter().product()
        }
    };
    Ok(DropoutPlan { p, scale: 1.0 / (1.0 - p), seed, group })
}

fn apply(x: &Tensor, plan: &DropoutPlan) -> Result<Tensor> {
    if plan.p == 0.0 {
        return x.deep_clone();
    }
    match x.device() {
        Device::Cpu => crate::cpu::dropout::apply(x, plan),
        Device::Cuda(d) => cuda::dropout::apply(&d, x, plan),
    }
}

/// x: [..] (for `Channels`, [N, C, *]) -> same shape: y = x * keep / (1 - p), keep as above.
/// p must be in [0, 1); p = 0 returns a copy.
pub fn dropout(x: &Tensor, p: f32, seed: u64, kind: DropoutKind) -> Result<Tensor> {
    let _p = crate::profile::op("dropout");
    apply(x, &plan("dropout", x, p, seed, kind)?)
}

/// dy: the shape of dropout's x -> dx = dy * keep / (1 - p), with the mask of the forward call
/// that had the same (p, seed, kind) recomputed.
pub fn dropout_backward(dy: &Tensor, p: f32, seed: u64, kind: DropoutKind) -> Result<Tensor> {
    let _p = crate::profile::op("dropout_backward");
    apply(dy, &plan("dropout_backward", dy, p, seed, kind)?)
}
