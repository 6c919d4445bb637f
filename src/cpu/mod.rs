//! The CPU reference backend: f32, rayon-parallel, each op small and obviously right. Every
//! CUDA kernel is tested against these functions; the models run on them in CI.

pub mod attention;
pub mod conv;
pub mod dropout;
pub mod elementwise;
pub mod gemm;
pub mod layout;
pub mod loss;
pub mod memory;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod sae;
pub mod softmax;
pub mod vmath;

use rayon::prelude::*;

/// Elements per task of the parallel elementwise loops: about 10 us of work at memory speed,
/// so a task costs little next to it, and a 1 MB tensor still splits over the threads.
pub(crate) const CHUNK: usize = 1 << 14;

/// f applied to every element, in parallel over chunks of `CHUNK`, each chunk's loop
/// vectorised (`vmath::simd`).
pub(crate) fn par_map(xs: &[f32], f: impl Fn(f32) -> f32 + Sync + Send) -> Vec<f32> {
    let mut out = vec![0.0f32; xs.len()];
    out.par_chunks_mut(CHUNK).zip(xs.par_chunks(CHUNK)).for_each(|(o, x)| {
        vmath::simd(|| {
            for (o, &v) in o.iter_mut().zip(x) {
                *o = f(v);
            }
        })
    });
    out
}
