//! Launchers for kernels/dropout.cu: one thread per element, the mask recomputed from
//! (seed, index).

use super::elementwise::empty;
use super::kernels::{Kernel, Module, FLOATS};
use super::launch::{cfg_1d, PushKernelArg};
use super::CudaDevice;
use crate::plan::dropout::DropoutPlan;
use crate::tensor::Tensor;
use crate::Result;
use std::sync::Arc;

const M: Module = Module::Dropout;

pub const DROPOUT_APPLY: Kernel = Kernel::new(M, "dropout_apply", FLOATS);

pub const KERNELS: &[Kernel] = &[DROPOUT_APPLY];

/// y = keep ? x * scale : 0 (forward on x, backward on dy).
pub fn apply(dev: &Arc<CudaDevice>, x: &Tensor, plan: &DropoutPlan) -> Result<Tensor> {
    let _r = super::nvtx::range("dropout");
    let mut y = empty(dev, x.shape().clone(), x.dtype())?;
    let n = x.numel();
    if n == 0 {
        return Ok(y);
    }
    let f = dev.function(&DROPOUT_APPLY, x.dtype())?;
    let (xp, yp, n64, group) = (x.cuda_ptr()?, y.cuda_ptr_mut()?, n as i64, plan.group.max(1) as i64);
    // SAFETY: x and y hold n elements of one dtype; group >= 1.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&xp)
            .arg(&yp)
            .arg(&n64)
            .arg(&group)
            .arg(&plan.p)
            .arg(&plan.scale)
            .arg(&plan.seed)
            .launch(cfg_1d(n, 256))
    }?;
    Ok(y)
}
