//! Cross-entropy on the CPU (f32 storage, f64 sums). The reference for kernels/loss.cu.

use super::softmax::softmax_row;
use crate::tensor::{Device, Shape, Tensor};
use crate::Result;
use rayon::prelude::*;

/// logits [B, C], labels (checked in range) -> (mean loss, rank 0; probs [B, C]).
pub fn cross_entropy(logits: &Tensor, labels: &[i64]) -> Result<(Tensor, Tensor)> {
    let xs = logits.cpu_f32("cross_entropy")?;
    let c = logits.dims()[1];
    let mut probs = vec![0.0f32; xs.len()];
    let losses: Vec<f64> = probs
        .par_chunks_mut(c)
        .zip(xs.par_chunks(c))
        .zip(labels.par_iter())
        .map(|((p, row), &l)| {
            softmax_row(row, p);
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
            max + sum.ln() - row[l as usize] as f64
        })
        .collect();
    let loss = losses.iter().sum::<f64>() / labels.len() as f64;
    let loss = Tensor::from_vec(vec![loss as f32], Shape::new(vec![]), &Device::Cpu)?;
    Ok((loss, Tensor::from_vec(probs, logits.shape().clone(), &Device::Cpu)?))
}

/// dlogits = dloss * (probs - onehot(labels)) / B.
pub fn cross_entropy_backward(probs: &Tensor, labels: &[i64], dloss: f32) -> Result<Tensor> {
    let ps = probs.cpu_f32("cross_entropy_backward")?;
    let c = probs.dims()[1];
    let scale = dloss as f64 / labels.len() as f64;
    let mut out = vec![0.0f32; ps.len()];
    out.par_chunks_mut(c).zip(ps.par_chunks(c)).zip(labels.par_iter()).for_each(|((o, p), &l)| {
        for (j, (o, &v)) in o.iter_mut().zip(p).enumerate() {
            let onehot = if j as i64 == l { 1.0 } else { 0.0 };
            *o = (scale * (v as f64 - onehot)) as f32;
        }
    });
    Tensor::from_vec(out, probs.shape().clone(), &Device::Cpu)
}
