//! Losses: cross-entropy over classes (torch.nn.CrossEntropyLoss with its default mean
//! reduction), forward and backward.
//!
//! Legend: B = batch, C = classes. Labels are [B] i64 or i32 class indices, checked in range on
//! the host (they are small).
//!
//! Backward accumulation rule: `cross_entropy_backward` returns a fresh dlogits (`=`).

use super::{check_float, check_same_device};
use crate::cuda;
use crate::tensor::{DType, Device, Tensor};
use crate::{ensure_op, Error, Result};

/// Checks labels against `scores` ([B, C] logits or probs, named `what`) and returns them on the
/// host.
fn check_labels(op: &'static str, labels: &Tensor, what: &str, scores: &Tensor, b: usize, c: usize) -> Result<Vec<i64>> {
    check_same_device(op, &[scores, labels])?;
    ensure_op!(
        labels.dims() == [b],
        op,
        "labels of shape {} do not fit {what} of shape {}: expected [{b}]",
        labels.shape(),
        scores.shape()
    );
    let host: Vec<i64> = match labels.dtype() {
        DType::I64 => labels.to_vec::<i64>()?,
        DType::I32 => labels.to_vec::<i32>()?.into_iter().map(i64::from).collect(),
        other => return Err(Error::op(op, format!("labels must be i64 or i32, got {other} of shape {}", labels.shape()))),
    };
    ensure_op!(b > 0, op, "empty batch: {what} of shape {}", scores.shape());
    if let Some((i, &l)) = host.iter().enumerate().find(|(_, &l)| l < 0 || l as u64 >= c as u64) {
        return Err(Error::op(op, format!("label {l} at index {i} is out of range for C = {c} classes ({what} of shape {})", scores.shape())));
    }
    Ok(host)
}

/// Cross-entropy with mean reduction: loss = mean over the batch of -log softmax(logits)[label].
/// logits: [B, C] float, labels: [B] i64 or i32 -> (loss: rank-0 f32, probs: [B, C] f32, the
/// softmax kept for the backward)
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor)> {
    let _p = crate::profile::op("cross_entropy");
    const OP: &str = "cross_entropy";
    check_float(OP, logits)?;
    let (b, c) = logits.dims2(OP)?;
    let host = check_labels(OP, labels, "logits", logits, b, c)?;
    match logits.device() {
        Device::Cpu => crate::cpu::loss::cross_entropy(logits, &host),
        Device::Cuda(d) => cuda::loss::cross_entropy(&d, logits, labels),
    }
}

/// dlogits = dloss * (probs - onehot(labels)) / B, for the loss scaled by `dloss`.
/// probs: [B, C] (from `cross_entropy`), labels: [B] i64 or i32 -> dlogits: [B, C], probs' dtype
pub fn cross_entropy_backward(probs: &Tensor, labels: &Tensor, dloss: f32) -> Result<Tensor> {
    let _p = crate::profile::op("cross_entropy_backward");
    const OP: &str = "cross_entropy_backward";
    check_float(OP, probs)?;
    let (b, c) = probs.dims2(OP)?;
    let host = check_labels(OP, labels, "probs", probs, b, c)?;
    match probs.device() {
        Device::Cpu => crate::cpu::loss::cross_entropy_backward(probs, &host, dloss),
        Device::Cuda(d) => cuda::loss::cross_entropy_backward(&d, probs, labels, dloss),
    }
}
