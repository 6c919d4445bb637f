//! Reductions: sum, mean, max and argmax over one dim, the sum of every element, and top-k
//! along the last dim. Float inputs, f32 accumulation. The backends see the reduced tensor as
//! [outer, n, inner] (n the reduced dim), described by a `ReducePlan` built here.

use super::check_float;
use crate::cuda;
use crate::tensor::{Device, Shape, Tensor};
use crate::{ensure_op, Error, Result};

/// What a one-dim reduction reduces over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Mean,
    /// Propagates NaN: a row holding a NaN has max NaN.
    Max,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
        }
    }
}

/// x seen as [outer, n, inner], reduced over n; `out` is the output shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReducePlan {
    pub outer: usize,
    pub n: usize,
    pub inner: usize,
    pub out: Shape,
}

impl ReducePlan {
    /// The plan for reducing `shape` over `dim` (negative counts from the end).
    pub fn new(op: &'static str, shape: &Shape, dim: isize, keepdim: bool) -> Result<ReducePlan> {
        let d = shape
            .resolve_dim(dim)
            .map_err(|_| Error::op(op, format!("dim {dim} is out of range for x {shape}")))?;
        let dims = shape.dims();
        let mut out = dims.to_vec();
        if keepdim {
            out[d] = 1;
        } else {
            out.remove(d);
        }
        Ok(ReducePlan {
            outer: dims[..d].iter().product(),
            n: dims[d],
            inner: dims[d + 1..].iter().product(),
            out: Shape::new(out),
        })
    }
}

fn reduce(x: &Tensor, dim: isize, keepdim: bool, op: ReduceOp) -> Result<Tensor> {
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
    check_float("sum_all", x)?;
    match x.device() {
        Device::Cpu => crate::cpu::reduce::sum_all(x),
        Device::Cuda(d) => cuda::reduce::sum_all(&d, x),
    }
}

/// The largest k a CUDA top-k takes (the block sorts its k candidates in shared memory).
pub const TOPK_MAX_K_CUDA: usize = 1024;

/// x: [.., N] -> (values [.., k] in x's dtype, sorted descending; indices [.., k] i64): the k
/// largest elements of each row of the last dim, in torch.topk's order: NaN is larger than any
/// number, equal values (and -0.0 vs 0.0) come lower index first. 1 <= k <= N; on CUDA also
/// k <= 1024 and N < 2^31.
pub fn topk(x: &Tensor, k: usize) -> Result<(Tensor, Tensor)> {
    check_float("topk", x)?;
    let n = *x.dims().last().ok_or_else(|| Error::op("topk", "x is rank-0; expected [.., N]"))?;
    ensure_op!(k >= 1 && k <= n, "topk", "k = {k} must be in 1..={n} for x {} (N = {n})", x.shape());
    match x.device() {
        Device::Cpu => crate::cpu::reduce::topk(x, k),
        Device::Cuda(d) => cuda::reduce::topk(&d, x, k),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_splits_shape_around_dim() {
        let s = Shape::from([2, 3, 4, 5]);
        let p = ReducePlan::new("t", &s, 1, false).unwrap();
        assert_eq!((p.outer, p.n, p.inner), (2, 3, 20));
        assert_eq!(p.out, Shape::from([2, 4, 5]));
        let p = ReducePlan::new("t", &s, -1, true).unwrap();
        assert_eq!((p.outer, p.n, p.inner), (24, 5, 1));
        assert_eq!(p.out, Shape::from([2, 3, 4, 1]));
        assert!(ReducePlan::new("t", &s, 4, false).is_err());
        assert!(ReducePlan::new("t", &s, -5, false).is_err());
    }
}
