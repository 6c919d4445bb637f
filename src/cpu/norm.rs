//! Normalisation layers on the CPU (f32 storage, statistics in f64, GroupNorm and LayerNorm
//! applied in f32, their loops vectorised): GroupNorm (+ SiLU), LayerNorm, BatchNorm forward
//! (train and eval) and backward. The reference for kernels/norm.cu.

use super::vmath::{self, simd};
use crate::plan::norm::{BatchNormCache, BatchNormGrads, BatchNormParams, BatchNormState, GroupNormParams, LayerNormParams};
use crate::tensor::{Device, Tensor};
use crate::Result;
use rayon::prelude::*;

/// (mean, biased variance) of `xs`, two-pass in f64.
fn mean_var(xs: impl Iterator<Item = f32> + Clone) -> (f64, f64) {
    let (mut n, mut sum) = (0usize, 0.0f64);
    for v in xs.clone() {
        sum += v as f64;
        n += 1;
    }
    let mean = sum / n as f64;
    let m2: f64 = xs.map(|v| (v as f64 - mean).powi(2)).sum();
    (mean, m2 / n as f64)
}

/// `mean_var` of a slice, summed in eight f64 lanes (vectorised, no serial chain of adds).
#[inline(always)]
fn slice_mean_var(xs: &[f32]) -> (f64, f64) {
    #[inline(always)]
    fn lanes(xs: &[f32], f: impl Fn(f32) -> f64) -> f64 {
        let mut acc = [0.0f64; 8];
        let chunks = xs.chunks_exact(8);
        let rest: f64 = chunks.remainder().iter().map(|&v| f(v)).sum();
        for c in chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += f(v);
            }
        }
        acc.iter().sum::<f64>() + rest
    }
    let n = xs.len() as f64;
    let mean = lanes(xs, |v| v as f64) / n;
    (mean, lanes(xs, |v| (v as f64 - mean).powi(2)) / n)
}

/// Optional per-channel parameter as f32 values (None stays None).
fn param<'a>(p: Option<&'a Tensor>, op: &'static str) -> Result<Option<&'a [f32]>> {
    p.map(|t| t.cpu_f32(op)).transpose()
}

/// x [N, C, S] -> y: each (n, g) group of C/G * S contiguous values normalised, scaled, shifted,
/// then SiLU when asked.
pub fn group_norm(x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>, p: &GroupNormParams) -> Result<Tensor> {
    const OP: &str = "group_norm";
    let xs = x.cpu_f32(OP)?;
    let (w, b) = (param(weight, OP)?, param(bias, OP)?);
    let len = p.group_len();
    let mut out = vec![0.0f32; xs.len()];
    if len > 0 {
        out.par_chunks_mut(len).zip(xs.par_chunks(len)).enumerate().for_each(|(gi, (o, g))| simd(|| {
            let (mean, var) = slice_mean_var(g);
            let rstd = 1.0 / (var + p.eps as f64).sqrt();
            let c0 = (gi % p.groups) * p.channels_per_group();
            // Per channel, y = x * scale + shift with scale and shift folded in f64, applied in f32.
            for (ci, (o, g)) in o.chunks_mut(p.spatial).zip(g.chunks(p.spatial)).enumerate() {
                let c = c0 + ci;
                let scale = rstd * w.map_or(1.0, |w| w[c] as f64);
                let shift = b.map_or(0.0, |b| b[c] as f64) - mean * scale;
                let (scale, shift) = (scale as f32, shift as f32);
                if p.silu {
                    o.iter_mut().zip(g).for_each(|(o, &v)| *o = vmath::silu(v * scale + shift));
                } else {
                    o.iter_mut().zip(g).for_each(|(o, &v)| *o = v * scale + shift);
                }
            }
        }));
    }
    Tensor::from_vec(out, x.shape().clone(), &Device::Cpu)
}

/// x [rows, C] -> y: each row normalised, scaled and shifted.
pub fn layer_norm(x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>, p: &LayerNormParams) -> Result<Tensor> {
    const OP: &str = "layer_norm";
    let xs = x.cpu_f32(OP)?;
    let (w, b) = (param(weight, OP)?, param(bias, OP)?);
    let mut out = vec![0.0f32; xs.len()];
    if p.c > 0 {
        out.par_chunks_mut(p.c).zip(xs.par_chunks(p.c)).for_each(|(o, row)| simd(|| {
            let (mean, var) = slice_mean_var(row);
            let (mean, rstd) = (mean as f32, (1.0 / (var + p.eps as f64).sqrt()) as f32);
            for (j, (o, &v)) in o.iter_mut().zip(row).enumerate() {
                *o = (v - mean) * rstd * w.map_or(1.0, |w| w[j]) + b.map_or(0.0, |b| b[j]);
            }
        }));
    }
    Tensor::from_vec(out, x.shape().clone(), &Device::Cpu)
}

/// The N*S values of channel `c` of x [N, C, S].
fn channel<'a>(xs: &'a [f32], p: &BatchNormParams, c: usize) -> impl Iterator<Item = f32> + Clone + 'a {
    let (n, s, cs) = (p.n, p.spatial, p.c * p.spatial);
    (0..n).flat_map(move |n| xs[n * cs + c * s..n * cs + (c + 1) * s].iter().copied())
}

/// y = (x - mean[c]) * scale[c] * w[c] + b[c] over x [N, C, S].
fn apply(xs: &[f32], p: &BatchNormParams, mean: &[f64], scale: &[f64], w: Option<&[f32]>, b: Option<&[f32]>) -> Vec<f32> {
    let mut out = vec![0.0f32; xs.len()];
    if p.spatial > 0 {
        out.par_chunks_mut(p.spatial).zip(xs.par_chunks(p.spatial)).enumerate().for_each(|(i, (o, x))| {
            let c = i % p.c;
            let k = scale[c] * w.map_or(1.0, |w| w[c] as f64);
            let sh = b.map_or(0.0, |b| b[c] as f64);
            for (o, &v) in o.iter_mut().zip(x) {
                *o = ((v as f64 - mean[c]) * k + sh) as f32;
            }
        });
    }
    out
}

/// Train-mode batch norm on x [N, C, S]: batch statistics, optional running-stat update.
pub fn batch_norm_train(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    state: Option<&mut BatchNormState>,
    momentum: f32,
    p: &BatchNormParams,
) -> Result<(Tensor, BatchNormCache)> {
    const OP: &str = "batch_norm_train";
    let xs = x.cpu_f32(OP)?;
    let (w, b) = (param(weight, OP)?, param(bias, OP)?);
    let stats: Vec<(f64, f64)> = (0..p.c).into_par_iter().map(|c| mean_var(channel(xs, p, c))).collect();
    let mean: Vec<f64> = stats.iter().map(|s| s.0).collect();
    let rstd: Vec<f64> = stats.iter().map(|s| 1.0 / (s.1 + p.eps as f64).sqrt()).collect();
    if let Some(st) = state {
        let m = p.per_channel() as f64;
        let mom = momentum as f64;
        let rm = st.running_mean.cpu_f32_mut(OP)?;
        for (r, &(mu, _)) in rm.iter_mut().zip(&stats) {
            *r = ((1.0 - mom) * *r as f64 + mom * mu) as f32;
        }
        let rv = st.running_var.cpu_f32_mut(OP)?;
        for (r, &(_, var)) in rv.iter_mut().zip(&stats) {
            *r = ((1.0 - mom) * *r as f64 + mom * var * m / (m - 1.0)) as f32;
        }
    }
    let y = apply(xs, p, &mean, &rstd, w, b);
    let to_tensor = |v: &[f64]| Tensor::from_vec(v.iter().map(|&a| a as f32).collect::<Vec<f32>>(), [p.c], &Device::Cpu);
    let cache = BatchNormCache { mean: to_tensor(&mean)?, rstd: to_tensor(&rstd)? };
    Ok((Tensor::from_vec(y, x.shape().clone(), &Device::Cpu)?, cache))
}

/// Eval-mode batch norm on x [N, C, S] with the running statistics.
pub fn batch_norm_eval(x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>, state: &BatchNormState, p: &BatchNormParams) -> Result<Tensor> {
    const OP: &str = "batch_norm_eval";
    let xs = x.cpu_f32(OP)?;
    let (w, b) = (param(weight, OP)?, param(bias, OP)?);
    let mean: Vec<f64> = state.running_mean.cpu_f32(OP)?.iter().map(|&v| v as f64).collect();
    let scale: Vec<f64> = state.running_var.cpu_f32(OP)?.iter().map(|&v| 1.0 / (v as f64 + p.eps as f64).sqrt()).collect();
    Tensor::from_vec(apply(xs, p, &mean, &scale, w, b), x.shape().clone(), &Device::Cpu)
}

/// Batch-norm gradients on x [N, C, S] from the saved mean and rstd.
pub fn batch_norm_backward(dy: &Tensor, x: &Tensor, cache: &BatchNormCache, weight: Option<&Tensor>, p: &BatchNormParams) -> Result<BatchNormGrads> {
    const OP: &str = "batch_norm_backward";
    let xs = x.cpu_f32(OP)?;
    let gs = dy.cpu_f32(OP)?;
    let w = param(weight, OP)?;
    let mean = cache.mean.cpu_f32(OP)?;
    let rstd = cache.rstd.cpu_f32(OP)?;
    // Per channel: (sum dy, sum dy * xhat).
    let sums: Vec<(f64, f64)> = (0..p.c)
        .into_par_iter()
        .map(|c| {
            let (mu, rs) = (mean[c] as f64, rstd[c] as f64);
            channel(gs, p, c).zip(channel(xs, p, c)).fold((0.0, 0.0), |(sg, sgx), (g, v)| {
                (sg + g as f64, sgx + g as f64 * (v as f64 - mu) * rs)
            })
        })
        .collect();
    let m = p.per_channel() as f64;
    let mut dx = vec![0.0f32; xs.len()];
    if p.spatial > 0 {
        dx.par_chunks_mut(p.spatial)
            .zip(gs.par_chunks(p.spatial).zip(xs.par_chunks(p.spatial)))
            .enumerate()
            .for_each(|(i, (o, (g, v)))| {
                let c = i % p.c;
                let (mu, rs) = (mean[c] as f64, rstd[c] as f64);
                let k = rs * w.map_or(1.0, |w| w[c] as f64);
                let (a, bx) = (sums[c].0 / m, sums[c].1 / m);
                for (o, (&g, &v)) in o.iter_mut().zip(g.iter().zip(v)) {
                    *o = (k * (g as f64 - a - (v as f64 - mu) * rs * bx)) as f32;
                }
            });
    }
    let (dweight, dbias) = if weight.is_some() {
        let dw: Vec<f32> = sums.iter().map(|s| s.1 as f32).collect();
        let db: Vec<f32> = sums.iter().map(|s| s.0 as f32).collect();
        (Some(Tensor::from_vec(dw, [p.c], &Device::Cpu)?), Some(Tensor::from_vec(db, [p.c], &Device::Cpu)?))
    } else {
        (None, None)
    };
    Ok(BatchNormGrads { dx: Tensor::from_vec(dx, x.shape().clone(), &Device::Cpu)?, dweight, dbias })
}
