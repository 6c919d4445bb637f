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
        (*m, *v, *p) = adam_update(*p, g, *m, *v, s);
    });
    Ok(())
}

/// torch.optim.Adam(W)'s update of one element in its order of operations (see ops::optim):
/// returns the new (m, v, p). The one copy of the element update: the k-SAE's fused step
/// (cpu/sae.rs) uses it too, rounding m and v to its moments' storage afterwards.
#[inline]
pub(crate) fn adam_update(p: f32, g: f32, m: f32, v: f32, s: &AdamScalars) -> (f32, f32, f32) {
    let g = if s.grad_decay != 0.0 { g + s.grad_decay * p } else { g };
    let p = p * s.param_scale;
    let m = s.beta1 * m + s.one_minus_beta1 * g;
    let v = s.beta2 * v + s.one_minus_beta2 * g * g;
    let denom = v.sqrt() / s.bc2_sqrt + s.eps;
    (m, v, p - s.step_size * (m / denom))
}
