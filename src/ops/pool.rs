//! Pooling: adaptive average pooling (torch.nn.AdaptiveAvgPool2d's bins) with its backward, and
//! global average pooling. Shapes are checked here; the backends trust a `PoolPlan`.

use super::check_float;
use crate::cuda;
use crate::tensor::{Device, Tensor};
use crate::{ensure_op, Result};
pub use crate::plan::pool::{adaptive_bin, PoolPlan};

fn check_sizes(op: &'static str, what: &str, plan: &PoolPlan) -> Result<()> {
    ensure_op!(
        plan.h >= 1 && plan.w >= 1 && plan.oh >= 1 && plan.ow >= 1,
        op,
        "input {}x{} and output {}x{} sizes must be >= 1 ({what})",
        plan.h,
        plan.w,
        plan.oh,
        plan.ow
    );
    Ok(())
}

/// x: [N, C, H, W] -> [N, C, oh, ow]: out[.., i, j] = the mean of x over rows
/// adaptive_bin(i, H, oh) and columns adaptive_bin(j, W, ow).
pub fn adaptive_avg_pool2d(x: &Tensor, out_hw: (usize, usize)) -> Result<Tensor> {
    let _p = crate::profile::op("adaptive_avg_pool2d");
    check_float("adaptive_avg_pool2d", x)?;
    let (n, c, h, w) = x.dims4("adaptive_avg_pool2d")?;
    let plan = PoolPlan { n, c, h, w, oh: out_hw.0, ow: out_hw.1 };
    check_sizes("adaptive_avg_pool2d", &format!("x {}", x.shape()), &plan)?;
    match x.device() {
        Device::Cpu => crate::cpu::pool::adaptive_avg_pool2d(x, &plan),
        Device::Cuda(d) => cuda::pool::adaptive_avg_pool2d(&d, x, &plan),
    }
}

/// dy: [N, C, oh, ow] -> dx: [N, C, H, W] with (H, W) = in_hw: each dy element spread evenly
/// over its bin (dx = the sum, over the bins holding a position, of dy / bin area).
pub fn adaptive_avg_pool2d_backward(dy: &Tensor, in_hw: (usize, usize)) -> Result<Tensor> {
    let _p = crate::profile::op("adaptive_avg_pool2d_backward");
    check_float("adaptive_avg_pool2d_backward", dy)?;
    let (n, c, oh, ow) = dy.dims4("adaptive_avg_pool2d_backward")?;
    let plan = PoolPlan { n, c, h: in_hw.0, w: in_hw.1, oh, ow };
    check_sizes("adaptive_avg_pool2d_backward", &format!("dy {}", dy.shape()), &plan)?;
    match dy.device() {
        Device::Cpu => crate::cpu::pool::adaptive_avg_pool2d_backward(dy, &plan),
        Device::Cuda(d) => cuda::pool::adaptive_avg_pool2d_backward(&d, dy, &plan),
    }
}

/// x: [N, C, H, W] -> [N, C]: the mean over H and W (a row mean of x seen as [N, C, H*W]).
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    let _p = crate::profile::op("global_avg_pool");
    check_float("global_avg_pool", x)?;
    let (n, c, h, w) = x.dims4("global_avg_pool")?;
    ensure_op!(h * w > 0, "global_avg_pool", "x {} has no spatial positions", x.shape());
    super::reduce::mean(&x.reshape([n, c, h * w])?, -1, false)
}
