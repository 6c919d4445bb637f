//! Normalisation layers: GroupNorm (optionally fused with SiLU), LayerNorm over the last dim, and
//! BatchNorm with train-mode statistics, running-stat updates, eval mode and a backward pass.
//! All follow PyTorch: biased variance for normalising, eps inside the square root.
//!
//! Legend: N = batch, C = channels, S = product of the spatial dims (H*W for images), G = groups.
//! Weight and bias are [C] in x's dtype, each optional. Batch-norm statistics are f32.
//!
//! Backward accumulation rule: `batch_norm_backward` returns fresh gradients (`=`, never `+=`);
//! the trainer adds parameter gradients into its own buffers.

use super::{check_float, check_same_device, check_same_dtype};
use crate::cuda;
use crate::tensor::{DType, Device, Tensor};
use crate::{ensure_op, Error, Result};
pub use crate::plan::norm::{BatchNormCache, BatchNormGrads, BatchNormParams, BatchNormState, GroupNormParams, LayerNormParams};

/// Checks an optional per-channel parameter: [c], x's dtype and device.
fn check_param(op: &'static str, name: &str, p: Option<&Tensor>, x: &Tensor, c: usize) -> Result<()> {
    if let Some(p) = p {
        check_same_device(op, &[x, p])?;
        check_same_dtype(op, &[x, p])?;
        ensure_op!(p.dims() == [c], op, "{name} of shape {} does not fit x of shape {}: expected [{c}]", p.shape(), x.shape());
    }
    Ok(())
}

/// (N, C, S) of x [N, C, *spatial], rank >= 2.
fn ncs(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize)> {
    ensure_op!(x.rank() >= 2, op, "x must be [N, C, *spatial] (rank >= 2), got shape {}", x.shape());
    let d = x.dims();
    Ok((d[0], d[1], d[2..].iter().product()))
}

fn check_eps(op: &'static str, eps: f32) -> Result<()> {
    ensure_op!(eps.is_finite() && eps >= 0.0, op, "eps must be finite and >= 0, got {eps}");
    Ok(())
}

/// torch.nn.GroupNorm, then SiLU when `silu` (the fused GroupNorm+SiLU of the SD U-Net and VAE).
/// x: [N, C, *spatial] (rank >= 2), weight, bias: [C] -> [N, C, *spatial]; C % groups == 0.
pub fn group_norm(x: &Tensor, groups: usize, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f32, silu: bool) -> Result<Tensor> {
    let _p = crate::profile::op(if silu { "group_norm+silu" } else { "group_norm" });
    const OP: &str = "group_norm";
    check_float(OP, x)?;
    let (n, c, spatial) = ncs(OP, x)?;
    ensure_op!(groups > 0 && c % groups == 0, OP, "{c} channels of x {} do not split into {groups} groups", x.shape());
    check_param(OP, "weight", weight, x, c)?;
    check_param(OP, "bias", bias, x, c)?;
    check_eps(OP, eps)?;
    let p = GroupNormParams { n, c, spatial, groups, eps, silu };
    match x.device() {
        Device::Cpu => crate::cpu::norm::group_norm(x, weight, bias, &p),
        Device::Cuda(d) => cuda::norm::group_norm(&d, x, weight, bias, &p),
    }
}

/// torch.nn.LayerNorm over the last dim.
/// x: [.., C], weight, bias: [C] -> [.., C]
pub fn layer_norm(x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f32) -> Result<Tensor> {
    let _p = crate::profile::op("layer_norm");
    const OP: &str = "layer_norm";
    check_float(OP, x)?;
    let c = *x.dims().last().ok_or_else(|| Error::op(OP, "x must have rank >= 1, got a rank-0 tensor"))?;
    check_param(OP, "weight", weight, x, c)?;
    check_param(OP, "bias", bias, x, c)?;
    check_eps(OP, eps)?;
    let rows = x.numel().checked_div(c).unwrap_or(0);
    let p = LayerNormParams { rows, c, eps };
    match x.device() {
        Device::Cpu => crate::cpu::norm::layer_norm(x, weight, bias, &p),
        Device::Cuda(d) => cuda::norm::layer_norm(&d, x, weight, bias, &p),
    }
}

/// Checks a batch-norm call's x, weight and bias; bias needs a weight (affine or not at all).
fn check_batch_norm(op: &'static str, x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f32) -> Result<BatchNormParams> {
    check_float(op, x)?;
    let (n, c, spatial) = ncs(op, x)?;
    check_param(op, "weight", weight, x, c)?;
    check_param(op, "bias", bias, x, c)?;
    ensure_op!(
        weight.is_some() || bias.is_none(),
        op,
        "a bias without a weight: batch norm is affine (both) or not (neither); x {}",
        x.shape()
    );
    check_eps(op, eps)?;
    Ok(BatchNormParams { n, c, spatial, eps })
}

/// Checks the running statistics: [C] f32 each, on x's device.
fn check_state(op: &'static str, state: &BatchNormState, x: &Tensor, c: usize) -> Result<()> {
    for (name, t) in [("running_mean", &state.running_mean), ("running_var", &state.running_var)] {
        check_same_device(op, &[x, t])?;
        ensure_op!(
            t.dims() == [c] && t.dtype() == DType::F32,
            op,
            "{name} must be [{c}] f32 for x of shape {}, got {} {}",
            x.shape(),
            t.shape(),
            t.dtype()
        );
    }
    Ok(())
}

/// Batch norm in training mode (torch.nn.BatchNorm2d.train()): normalises with the batch mean and
/// biased variance over N and the spatial dims, and, when `state` is given, updates it in place:
/// running_mean = (1 - momentum) * running_mean + momentum * mean, running_var likewise with the
/// unbiased variance. weight None = affine=False.
/// x: [N, C, *spatial] (rank >= 2), weight, bias: [C] -> (y [N, C, *spatial], cache)
pub fn batch_norm_train(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    state: Option<&mut BatchNormState>,
    momentum: f32,
    eps: f32,
) -> Result<(Tensor, BatchNormCache)> {
    let _p = crate::profile::op("batch_norm_train");
    const OP: &str = "batch_norm_train";
    let p = check_batch_norm(OP, x, weight, bias, eps)?;
    ensure_op!(
        p.per_channel() > 1,
        OP,
        "training needs more than one value per channel; x {} has {}",
        x.shape(),
        p.per_channel()
    );
    if let Some(s) = state.as_deref() {
        check_state(OP, s, x, p.c)?;
        ensure_op!(momentum.is_finite(), OP, "momentum must be finite, got {momentum}");
    }
    match x.device() {
        Device::Cpu => crate::cpu::norm::batch_norm_train(x, weight, bias, state, momentum, &p),
        Device::Cuda(d) => cuda::norm::batch_norm_train(&d, x, weight, bias, state, momentum, &p),
    }
}

/// Batch norm in eval mode: normalises with the running statistics.
/// x: [N, C, *spatial] (rank >= 2), weight, bias: [C] -> [N, C, *spatial]
pub fn batch_norm_eval(x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>, state: &BatchNormState, eps: f32) -> Result<Tensor> {
    let _p = crate::profile::op("batch_norm_eval");
    const OP: &str = "batch_norm_eval";
    let p = check_batch_norm(OP, x, weight, bias, eps)?;
    check_state(OP, state, x, p.c)?;
    match x.device() {
        Device::Cpu => crate::cpu::norm::batch_norm_eval(x, weight, bias, state, &p),
        Device::Cuda(d) => cuda::norm::batch_norm_eval(&d, x, weight, bias, state, &p),
    }
}

/// Gradients of `batch_norm_train` given dL/dy. With xhat = (x - mean) * rstd:
/// dbias = sum(dy), dweight = sum(dy * xhat), dx = w * rstd * (dy - mean(dy) - xhat * mean(dy * xhat))
/// (sums and means per channel over N and the spatial dims).
/// dy, x: [N, C, *spatial], cache from the forward, weight: [C] -> grads
pub fn batch_norm_backward(dy: &Tensor, x: &Tensor, cache: &BatchNormCache, weight: Option<&Tensor>) -> Result<BatchNormGrads> {
    let _p = crate::profile::op("batch_norm_backward");
    const OP: &str = "batch_norm_backward";
    let p = check_batch_norm(OP, x, weight, None, 0.0)?;
    check_same_device(OP, &[x, dy, &cache.mean, &cache.rstd])?;
    check_same_dtype(OP, &[x, dy])?;
    ensure_op!(dy.shape() == x.shape(), OP, "dy {} and x {} differ in shape", dy.shape(), x.shape());
    for (name, t) in [("cache.mean", &cache.mean), ("cache.rstd", &cache.rstd)] {
        ensure_op!(
            t.dims() == [p.c] && t.dtype() == DType::F32,
            OP,
            "{name} must be [{}] f32 for x of shape {}, got {} {}",
            p.c,
            x.shape(),
            t.shape(),
            t.dtype()
        );
    }
    ensure_op!(p.per_channel() > 0, OP, "x {} has no elements per channel", x.shape());
    match x.device() {
        Device::Cpu => crate::cpu::norm::batch_norm_backward(dy, x, cache, weight, &p),
        Device::Cuda(d) => cuda::norm::batch_norm_backward(&d, dy, x, cache, weight, &p),
    }
}
