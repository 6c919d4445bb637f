//! Launchers for kernels/pool.cu: adaptive average pooling forward and backward, one thread
//! per output element. (Global average pooling runs as a row mean in reduce.cu.)

use super::elementwise::empty;
use super::kernels::{Kernel, Module, FLOATS};
use super::launch::{cfg_1d, to_i32, PushKernelArg};
use super::CudaDevice;
use crate::plan::pool::PoolPlan;
use crate::tensor::Tensor;
use crate::Result;
use std::sync::Arc;

const M: Module = Module::Pool;

pub const ADAPTIVE_AVG_POOL2D_FWD: Kernel = Kernel::new(M, "adaptive_avg_pool2d_fwd", FLOATS);
pub const ADAPTIVE_AVG_POOL2D_BWD: Kernel = Kernel::new(M, "adaptive_avg_pool2d_bwd", FLOATS);

pub const KERNELS: &[Kernel] = &[ADAPTIVE_AVG_POOL2D_FWD, ADAPTIVE_AVG_POOL2D_BWD];

/// Launches `kernel` over `n` outputs with the plan's sizes; the kernels compute bin edges in
/// 32-bit ints, so (h + 1) * (oh + 1) and (w + 1) * (ow + 1) must fit.
fn launch(dev: &Arc<CudaDevice>, kernel: &Kernel, src: &Tensor, dst: &mut Tensor, p: &PoolPlan) -> Result<()> {
    let n = dst.numel();
    if n == 0 {
        return Ok(());
    }
    to_i32((p.h + 1) * (p.oh + 1), "adaptive pool (h + 1) * (oh + 1)")?;
    to_i32((p.w + 1) * (p.ow + 1), "adaptive pool (w + 1) * (ow + 1)")?;
    let (h, w, oh, ow) = (p.h as i32, p.w as i32, p.oh as i32, p.ow as i32);
    let f = dev.function(kernel, src.dtype())?;
    let (sp, dp, n64) = (src.cuda_ptr()?, dst.cuda_ptr_mut()?, n as i64);
    // SAFETY: src and dst are of one dtype and hold N*C planes of their sides of the plan
    // (h*w and oh*ow, checked in ops); n = dst's element count guards the grid.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&sp)
            .arg(&dp)
            .arg(&n64)
            .arg(&h)
            .arg(&w)
            .arg(&oh)
            .arg(&ow)
            .launch(cfg_1d(n, 256))
    }?;
    Ok(())
}

pub fn adaptive_avg_pool2d(dev: &Arc<CudaDevice>, x: &Tensor, p: &PoolPlan) -> Result<Tensor> {
    let _r = super::nvtx::range("adaptive_avg_pool2d");
    let mut y = empty(dev, [p.n, p.c, p.oh, p.ow], x.dtype())?;
    launch(dev, &ADAPTIVE_AVG_POOL2D_FWD, x, &mut y, p)?;
    Ok(y)
}

pub fn adaptive_avg_pool2d_backward(dev: &Arc<CudaDevice>, dy: &Tensor, p: &PoolPlan) -> Result<Tensor> {
    let _r = super::nvtx::range("adaptive_avg_pool2d_backward");
    let mut dx = empty(dev, [p.n, p.c, p.h, p.w], dy.dtype())?;
    launch(dev, &ADAPTIVE_AVG_POOL2D_BWD, dy, &mut dx, p)?;
    Ok(dx)
}
