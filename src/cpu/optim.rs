//! Adam(W) on the CPU: the per-element update of ops::optim in f32, in place. The reference for
//! kernels/optim.cu.

use crate::plan::optim::AdamScalars;
use crate::tensor::Tensor;
use crate::Result;
use rayon::prelude::*;

pub fn adam_step(param: &mut Tensor, grad: &Tensor, m: &mut Tensor, v: &mut Tensor, s: &AdamScalars) -> Result<()> {
    let g = grad.cpu_f32("adam_step")?;
    let p = param.cpu_f32_mut("adam_step")?;
    let m = m.cpu_f32_mut("adam_step")?;
    let v = v.cpu_f32_mut("adam_step")?;
    p.par_iter_mut().zip(m.par_iter_mut()).zip(v.par_iter_mut()).zip(g.par_iter()).for_each(|(((p, m), v), &g)| {
        let g = if s.grad_decay != 0.0 { g + s.grad_decay * *p } else { g };
        let pd = *p * s.param_scale;
        *m = s.beta1 * *m + s.one_minus_beta1 * g;
        *v = s.beta2 * *v + s.one_minus_beta2 * g * g;
        let denom = v.sqrt() / s.bc2_sqrt + s.eps;
        *p = pd - s.step_size * (*m / denom);
    });
    Ok(())
}
