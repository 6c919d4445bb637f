//! Softmax along the last dim on the CPU (f32, sums in f64). The reference for
//! kernels/softmax.cu.

use crate::tensor::{Device, Tensor};
use crate::Result;
use rayon::prelude::*;

/// The softmax of one row into `out`.
pub fn softmax_row(row: &[f32], out: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    for (o, &v) in out.iter_mut().zip(row) {
        *o = ((v as f64 - max).exp() / sum) as f32;
    }
}

/// x [rows, C] -> softmax of each row.
pub fn softmax(x: &Tensor, c: usize) -> Result<Tensor> {
    let xs = x.cpu_f32("softmax")?;
    let mut out = vec![0.0f32; xs.len()];
    if c > 0 {
        out.par_chunks_mut(c).zip(xs.par_chunks(c)).for_each(|(o, row)| softmax_row(row, o));
    }
    Tensor::from_vec(out, x.shape().clone(), &Device::Cpu)
}
