//! Softmax along the last dim, numerically stable (the row max is subtracted first).

use super::check_float;
use crate::cuda;
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};

/// y = exp(x - max) / sum(exp(x - max)) along the last dim.
/// x: [.., C] -> [.., C], x's dtype
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let _p = crate::profile::op("softmax");
    const OP: &str = "softmax";
    check_float(OP, x)?;
    let c = *x.dims().last().ok_or_else(|| Error::op(OP, "x must have rank >= 1, got a rank-0 tensor"))?;
    let rows = x.numel().checked_div(c).unwrap_or(0);
    match x.device() {
        Device::Cpu => crate::cpu::softmax::softmax(x, c),
        Device::Cuda(d) => cuda::softmax::softmax(&d, x, rows, c),
    }
}
