//! Launchers for kernels/loss.cu: cross-entropy forward (per-row losses and probs, then a
//! fixed-order batch mean in one block) and backward. Labels are i64 or i32 (a kernel each).

use super::elementwise::empty;
use super::kernels::{Kernel, Module, F32_ONLY, FLOATS};
use super::launch::{cfg_blocks, to_i32, PushKernelArg};
use super::CudaDevice;
use crate::tensor::{DType, Shape, Tensor};
use crate::Result;
use std::sync::Arc;

const M: Module = Module::Loss;

pub const CROSS_ENTROPY_FWD_I64: Kernel = Kernel::new(M, "cross_entropy_fwd_i64", FLOATS);
pub const CROSS_ENTROPY_FWD_I32: Kernel = Kernel::new(M, "cross_entropy_fwd_i32", FLOATS);
pub const CROSS_ENTROPY_MEAN: Kernel = Kernel::new(M, "cross_entropy_mean", F32_ONLY);
pub const CROSS_ENTROPY_BWD_I64: Kernel = Kernel::new(M, "cross_entropy_bwd_i64", FLOATS);
pub const CROSS_ENTROPY_BWD_I32: Kernel = Kernel::new(M, "cross_entropy_bwd_i32", FLOATS);

pub const KERNELS: &[Kernel] =
    &[CROSS_ENTROPY_FWD_I64, CROSS_ENTROPY_FWD_I32, CROSS_ENTROPY_MEAN, CROSS_ENTROPY_BWD_I64, CROSS_ENTROPY_BWD_I32];

/// Rows (warps) per block of the forward kernel.
const ROWS_PER_BLOCK: usize = 8;
/// Threads of the one-block mean kernel (its `__launch_bounds__`).
const MEAN_THREADS: u32 = 1024;
/// Threads per block of the backward kernel.
const THREADS: u32 = 256;

/// logits [B, C], labels [B] (checked in range by ops) -> (mean loss, rank 0 f32; probs [B, C] f32).
pub fn cross_entropy(dev: &Arc<CudaDevice>, logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor)> {
    let _r = super::nvtx::range("cross_entropy");
    let (b, c) = (logits.dims()[0], logits.dims()[1]);
    let mut probs = empty(dev, [b, c], DType::F32)?;
    let mut rows = empty(dev, [b], DType::F32)?;
    let mut loss = empty(dev, Shape::new(vec![]), DType::F32)?;
    let kernel = if labels.dtype() == DType::I64 { &CROSS_ENTROPY_FWD_I64 } else { &CROSS_ENTROPY_FWD_I32 };
    let f = dev.function(kernel, logits.dtype())?;
    let (xp, lp, pp, rp) = (logits.cuda_ptr()?, labels.cuda_ptr()?, probs.cuda_ptr_mut()?, rows.cuda_ptr_mut()?);
    let (b_i, c_i) = (to_i32(b, "cross_entropy batch")?, to_i32(c, "cross_entropy classes")?);
    let cfg = cfg_blocks(b.div_ceil(ROWS_PER_BLOCK), ROWS_PER_BLOCK as u32 * 32, 0)?;
    // SAFETY: logits hold B*C elements of their dtype; labels B ints of the kernel's label type,
    // each in [0, C) (checked on the host); probs B*C f32 and rows B f32 are fresh.
    unsafe { dev.stream().launch_builder(&f).arg(&xp).arg(&lp).arg(&pp).arg(&rp).arg(&b_i).arg(&c_i).launch(cfg) }?;
    let mean = dev.function(&CROSS_ENTROPY_MEAN, DType::F32)?;
    let loss_p = loss.cuda_ptr_mut()?;
    // SAFETY: rows holds B f32 written by the launch above (same stream); loss one f32 (fresh).
    unsafe { dev.stream().launch_builder(&mean).arg(&rp).arg(&loss_p).arg(&b_i).launch(cfg_blocks(1, MEAN_THREADS, 0)?) }?;
    Ok((loss, probs))
}

/// dlogits = dloss * (probs - onehot(labels)) / B, probs' dtype.
pub fn cross_entropy_backward(dev: &Arc<CudaDevice>, probs: &Tensor, labels: &Tensor, dloss: f32) -> Result<Tensor> {
    let _r = super::nvtx::range("cross_entropy_backward");
    let (b, c) = (probs.dims()[0], probs.dims()[1]);
    let mut dx = empty(dev, [b, c], probs.dtype())?;
    let total = b * c;
    if total == 0 {
        return Ok(dx);
    }
    let kernel = if labels.dtype() == DType::I64 { &CROSS_ENTROPY_BWD_I64 } else { &CROSS_ENTROPY_BWD_I32 };
    let f = dev.function(kernel, probs.dtype())?;
    let (pp, lp, dp) = (probs.cuda_ptr()?, labels.cuda_ptr()?, dx.cuda_ptr_mut()?);
    let (total_i, c_i) = (total as i64, to_i32(c, "cross_entropy classes")?);
    let scale = dloss / b as f32;
    // SAFETY: probs and dx hold B*C elements of probs' dtype (dx fresh); labels B ints of the
    // kernel's label type.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&pp)
            .arg(&lp)
            .arg(&dp)
            .arg(&total_i)
            .arg(&c_i)
            .arg(&scale)
            .launch(cfg_blocks(total.div_ceil(THREADS as usize), THREADS, 0)?)
    }?;
    Ok(dx)
}
