//! Dropout on the CPU (f32): y = keep ? x * scale : 0 with keep = rng::uniform(seed, i / group)
//! >= p. The reference for kernels/dropout.cu, which computes the same bits.

use crate::plan::dropout::DropoutPlan;
use crate::rng;
use crate::tensor::{Device, Tensor};
use crate::Result;
use rayon::prelude::*;

pub fn apply(x: &Tensor, plan: &DropoutPlan) -> Result<Tensor> {
    let xs = x.cpu_f32("dropout")?;
    let out: Vec<f32> = xs
        .par_iter()
        .enumerate()
        .map(|(i, &v)| if rng::uniform(plan.seed, (i / plan.group) as u64) >= plan.p { v * plan.scale } else { 0.0 })
        .collect();
    Tensor::from_vec(out, x.shape().clone(), &Device::Cpu)
}
