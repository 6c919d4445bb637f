//! The CPU reference backend: f32, rayon-parallel, each op small and obviously right. Every
//! CUDA kernel is tested against these functions; the models run on them in CI.

pub mod attention;
pub mod conv;
pub mod dropout;
pub mod elementwise;
pub mod gemm;
pub mod layout;
pub mod loss;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod sae;
pub mod softmax;

use rayon::prelude::*;

/// f applied to every element, in parallel.
pub(crate) fn par_map(xs: &[f32], f: impl Fn(f32) -> f32 + Sync + Send) -> Vec<f32> {
    xs.par_iter().map(|&v| f(v)).collect()
}
