//! Reductions on the CPU (f32 in and out; sums accumulate in f64, so this reference is at least
//! as accurate as the f32-accumulating kernels it checks): sum, mean, max, argmax over one dim,
//! sum_all, and top-k. The reference for kernels/reduce.cu.

use crate::plan::reduce::{ReduceOp, ReducePlan};
use crate::tensor::{Device, Tensor};
use crate::Result;
use rayon::prelude::*;
use std::cmp::Ordering;

/// The elements x[o, 0..n, j] of a [outer, n, inner] tensor.
fn column<'a>(xs: &'a [f32], plan: &'a ReducePlan, t: usize) -> impl Iterator<Item = f32> + 'a {
    let (o, j) = (t / plan.inner, t % plan.inner);
    let base = o * plan.n * plan.inner + j;
    (0..plan.n).map(move |i| xs[base + i * plan.inner])
}

/// max that propagates NaN (once a NaN is seen the result stays NaN).
fn max_nan(a: f32, b: f32) -> f32 {
    if b > a || b.is_nan() {
        b
    } else {
        a
    }
}

pub fn reduce(x: &Tensor, op: ReduceOp, plan: &ReducePlan) -> Result<Tensor> {
    let xs = x.cpu_f32(op.name())?;
    let out: Vec<f32> = (0..plan.outer * plan.inner)
        .into_par_iter()
        .map(|t| match op {
            ReduceOp::Sum => column(xs, plan, t).map(f64::from).sum::<f64>() as f32,
            ReduceOp::Mean => (column(xs, plan, t).map(f64::from).sum::<f64>() / plan.n as f64) as f32,
            ReduceOp::Max => column(xs, plan, t).fold(f32::NEG_INFINITY, max_nan),
        })
        .collect();
    Tensor::from_vec(out, plan.out.clone(), &Device::Cpu)
}

/// Whether (b at index ib) beats (a at index ia) for argmax: NaN beats numbers, then the larger
/// value, then (on equal values or two NaNs) the lower index.
fn arg_better(b: f32, ib: usize, a: f32, ia: usize) -> bool {
    match (b.is_nan(), a.is_nan()) {
        (true, false) => true,
        (false, true) => false,
        (true, true) => ib < ia,
        (false, false) => b > a || (b == a && ib < ia),
    }
}

pub fn argmax(x: &Tensor, plan: &ReducePlan) -> Result<Tensor> {
    let xs = x.cpu_f32("argmax")?;
    let out: Vec<i64> = (0..plan.outer * plan.inner)
        .into_par_iter()
        .map(|t| {
            let mut best = (f32::NEG_INFINITY, usize::MAX);
            for (i, v) in column(xs, plan, t).enumerate() {
                if arg_better(v, i, best.0, best.1) {
                    best = (v, i);
                }
            }
            best.1 as i64
        })
        .collect();
    Tensor::from_vec(out, plan.out.clone(), &Device::Cpu)
}

/// The sum of all elements, rank-0.
pub fn sum_all(x: &Tensor) -> Result<Tensor> {
    let xs = x.cpu_f32("sum_all")?;
    let s = xs.par_iter().map(|&v| v as f64).sum::<f64>() as f32;
    Tensor::from_vec(vec![s], (), &Device::Cpu)
}

/// A u32 whose unsigned order is top-k's order on floats: NaN above +inf, -0.0 equal to 0.0.
/// kernels/reduce.cu's `topk_key` is the same function.
pub fn topk_key(v: f32) -> u32 {
    if v.is_nan() {
        return u32::MAX;
    }
    let u = if v == 0.0 { 0 } else { v.to_bits() };
    if u & 0x8000_0000 != 0 {
        !u
    } else {
        u | 0x8000_0000
    }
}

/// x: [.., N] -> (values [.., k] f32, indices [.., k] i64), larger key first, then lower index.
pub fn topk(x: &Tensor, k: usize) -> Result<(Tensor, Tensor)> {
    let xs = x.cpu_f32("topk")?;
    let n = *x.dims().last().expect("rank checked in ops");
    let rows = x.numel() / n;
    let mut vals = vec![0.0f32; rows * k];
    let mut idx = vec![0i64; rows * k];
    vals.par_chunks_mut(k).zip(idx.par_chunks_mut(k)).zip(xs.par_chunks(n)).for_each(|((v, ix), row)| {
        let cmp = |a: &usize, b: &usize| -> Ordering { topk_key(row[*b]).cmp(&topk_key(row[*a])).then(a.cmp(b)) };
        let mut order: Vec<usize> = (0..n).collect();
        if k < n {
            order.select_nth_unstable_by(k - 1, cmp);
            order.truncate(k);
        }
        order.sort_unstable_by(cmp);
        for (j, &i) in order.iter().enumerate() {
            v[j] = row[i];
            ix[j] = i as i64;
        }
    });
    let mut dims = x.dims().to_vec();
    *dims.last_mut().expect("rank checked in ops") = k;
    Ok((Tensor::from_vec(vals, dims.clone(), &Device::Cpu)?, Tensor::from_vec(idx, dims, &Device::Cpu)?))
}
