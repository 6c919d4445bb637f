//! Launchers for kernels/optim.cu: the Adam(W) update, one thread per element, in place.

use super::kernels::{Kernel, Module, F32_ONLY};
use super::launch::{cfg_1d, PushKernelArg};
use super::CudaDevice;
use crate::plan::optim::AdamScalars;
use crate::tensor::{DType, Tensor};
use crate::Result;
use std::sync::Arc;

const M: Module = Module::Optim;

pub const ADAM_STEP: Kernel = Kernel::new(M, "adam_step", F32_ONLY);

pub const KERNELS: &[Kernel] = &[ADAM_STEP];

pub fn adam_step(
    dev: &Arc<CudaDevice>,
    param: &mut Tensor,
    grad: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    s: &AdamScalars,
) -> Result<()> {
    let _r = super::nvtx::range("adam_step");
    let n = param.numel();
    if n == 0 {
        return Ok(());
    }
    let f = dev.function(&ADAM_STEP, DType::F32)?;
    let (pp, gp, mp, vp) = (param.cuda_ptr_mut()?, grad.cuda_ptr()?, m.cuda_ptr_mut()?, v.cuda_ptr_mut()?);
    let n64 = n as i64;
    // SAFETY: param, grad, m and v hold n f32 each (checked in ops); param, m and v are unique
    // storage (cuda_ptr_mut copies shared storage first), so the in-place writes touch only
    // these tensors; each thread reads and writes its own element only.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&pp)
            .arg(&gp)
            .arg(&mp)
            .arg(&vp)
            .arg(&n64)
            .arg(&s.grad_decay)
            .arg(&s.param_scale)
            .arg(&s.beta1)
            .arg(&s.one_minus_beta1)
            .arg(&s.beta2)
            .arg(&s.one_minus_beta2)
            .arg(&s.step_size)
            .arg(&s.bc2_sqrt)
            .arg(&s.eps)
            .launch(cfg_1d(n, 256))
    }?;
    Ok(())
}
