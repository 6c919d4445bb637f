//! Reductions: sum, mean, max and argmax over one dim, the sum of every element, and top-k
//! along the last dim. Float inputs, f32 accumulation. The backends see the reduced tensor as
//! [outer, n, inner] (n the reduced dim), described by a `ReducePlan` built here.

use super::check_float;
use crate::cuda;
use crate::tensor::{Device, Tensor};
use crate::{ensure_op, Error, Result};
pub use crate::plan::reduce::{ReduceOp, ReducePlan};

fn reduce(x: &Tensor, dim: isize, keepdim: bool, op: ReduceOp) -> Result<Tensor> {
    let _p = crate::profile::op(op.name());
    let name = op.name();
    check_float(name, x)?;
    let plan = ReducePlan::new(name, x.shape(), dim, keepdim)?;
    ensure_op!(op != ReduceOp::Max || plan.n > 0, name, "cannot take the max over an empty dim {dim} of x {}", x.shape());
    match x.device() {
        Device::Cpu => crate::cpu::reduce::reduce(x, op, &plan),
        Device::Cuda(d) => cuda::reduce::reduce(&d, x, op, &plan),
    }
}

/// x: [.., D, ..] -> the sum over `dim`: [.., ..] ([.., 1, ..] with keepdim), x's dtype.
pub fn sum(x: &Tensor, dim: isize, keepdim: bool) -> Result<Tensor> {
    reduce(x, dim, keepdim, ReduceOp::Sum)
}

/// x: [.., D, ..] -> the mean over `dim`: [.., ..] ([.., 1, ..] with keepdim), x's dtype.
/// The mean over an empty dim is NaN.
pub fn mean(x: &Tensor, dim: isize, keepdim: bool) -> Result<Tensor> {
    reduce(x, dim, keepdim, ReduceOp::Mean)
}

/// x: [.., D, ..] -> the max over `dim`: [.., ..] ([.., 1, ..] with keepdim), x's dtype.
/// NaN propagates; D must be > 0.
pub fn max(x: &Tensor, dim: isize, keepdim: bool) -> Result<Tensor> {
    reduce(x, dim, keepdim, ReduceOp::Max)
}

/// x: [.., D, ..] -> i64 [.., ..]: the index of the max over `dim`, the first one on ties;
/// NaN counts as larger than any number (the first NaN wins). D must be > 0.
pub fn argmax(x: &Tensor, dim: isize) -> Result<Tensor> {
    let _p = crate::profile::op("argmax");
    check_float("argmax", x)?;
    let plan = ReducePlan::new("argmax", x.shape(), dim, false)?;
    ensure_op!(plan.n > 0, "argmax", "cannot take the argmax over an empty dim {dim} of x {}", x.shape());
    match x.device() {
        Device::Cpu => crate::cpu::reduce::argmax(x, &plan),
        Device::Cuda(d) => cuda::reduce::argmax(&d, x, &plan),
    }
}

/// x: any shape -> rank-0, x's dtype: the sum of all elements (deterministic on both backends).
pub fn sum_all(x: &Tensor) -> Result<Tensor> {
    let _p = crate::profile::op("sum_all");
    check_float("sum_all", x)?;
    match x.device() {
        Device::Cpu => crate::cpu::reduce::sum_all(x),
        Device::Cuda(d) => cuda::reduce::sum_all(&d, x),
    }
}

/// x: [.., N] -> (values [.., k] in x's dtype, sorted descending; indices [.., k] i64): the k
/// largest elements of each row of the last dim, in torch.topk's order: NaN is larger than any
/// number, equal values (and -0.0 vs 0.0) come lower index first. 1 <= k <= N; on CUDA also
/// k <= 1024 and N < 2^31.
pub fn topk(x: &Tensor, k: usize) -> Result<(Tensor, Tensor)> {
    let _p = crate::profile::op("topk");
    check_float("topk", x)?;
    let n = *x.dims().last().ok_or_else(|| Error::op("topk", "x is rank-0; expected [.., N]"))?;
    ensure_op!(k >= 1 && k <= n, "topk", "k = {k} must be in 1..={n} for x {} (N = {n})", x.shape());
    match x.device() {
        Device::Cpu => crate::cpu::reduce::topk(x, k),
        Device::Cuda(d) => cuda::reduce::topk(&d, x, k),
    }
}
