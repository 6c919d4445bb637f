//! Launchers for kernels/softmax.cu: one warp per row for rows up to `WARP_MAX_C`, one block
//! per row beyond.

use super::elementwise::empty;
use super::kernels::{Kernel, Module, FLOATS};
use super::launch::{cfg_blocks, to_i32, PushKernelArg};
use super::CudaDevice;
use crate::tensor::Tensor;
use crate::Result;
use std::sync::Arc;

const M: Module = Module::Softmax;

pub const SOFTMAX_WARP: Kernel = Kernel::new(M, "softmax_warp", FLOATS);
pub const SOFTMAX_BLOCK: Kernel = Kernel::new(M, "softmax_block", FLOATS);

pub const KERNELS: &[Kernel] = &[SOFTMAX_WARP, SOFTMAX_BLOCK];

/// Longest row handled by one warp (32 elements per lane).
const WARP_MAX_C: usize = 1024;
/// Rows (warps) per block of the warp kernel.
const ROWS_PER_BLOCK: usize = 8;
/// Threads per block of the block kernel.
const BLOCK_THREADS: u32 = 256;

/// x [rows, C] -> softmax of each row, x's dtype.
pub fn softmax(dev: &Arc<CudaDevice>, x: &Tensor, rows: usize, c: usize) -> Result<Tensor> {
    let _r = super::nvtx::range("softmax");
    let mut y = empty(dev, x.shape().clone(), x.dtype())?;
    if rows == 0 || c == 0 {
        return Ok(y);
    }
    let (xp, yp) = (x.cuda_ptr()?, y.cuda_ptr_mut()?);
    let c_i = to_i32(c, "softmax row length")?;
    if c <= WARP_MAX_C {
        let f = dev.function(&SOFTMAX_WARP, x.dtype())?;
        let rows_i = rows as i64;
        let cfg = cfg_blocks(rows.div_ceil(ROWS_PER_BLOCK), ROWS_PER_BLOCK as u32 * 32, 0)?;
        // SAFETY: x and y hold rows*C elements of x's dtype; y is fresh.
        unsafe { dev.stream().launch_builder(&f).arg(&xp).arg(&yp).arg(&rows_i).arg(&c_i).launch(cfg) }?;
    } else {
        let f = dev.function(&SOFTMAX_BLOCK, x.dtype())?;
        let cfg = cfg_blocks(rows, BLOCK_THREADS, 0)?;
        // SAFETY: x and y hold rows*C elements of x's dtype (one block per row); y is fresh.
        unsafe { dev.stream().launch_builder(&f).arg(&xp).arg(&yp).arg(&c_i).launch(cfg) }?;
    }
    Ok(y)
}
