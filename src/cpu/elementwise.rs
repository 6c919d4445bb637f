//! Elementwise ops on the CPU (f32): activations and their derivatives, GEGLU, broadcasting
//! binary ops, affine, and dtype conversion (any dtype). The reference for
//! kernels/elementwise.cu.

use super::par_map;
use crate::plan::elementwise::{BinaryOp, BroadcastPlan, Unary};
use crate::tensor::{DType, Device, Storage, Tensor};
use crate::Result;
use rayon::prelude::*;

/// erf(x) in f64 with relative error below 1.2e-7 (Chebyshev fit of erfc, Numerical Recipes 6.2).
pub fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let erfc = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        1.0 - erfc
    } else {
        erfc - 1.0
    }
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_TANH_C: f64 = 0.044_715;

/// y = f(x) for one element, in f64 for accuracy.
pub fn unary_fn(op: Unary, x: f32) -> f32 {
    let x = x as f64;
    let y = match op {
        Unary::Relu => x.max(0.0),
        Unary::Silu => x / (1.0 + (-x).exp()),
        Unary::Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        Unary::GeluTanh => 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x)).tanh()),
        Unary::QuickGelu => x / (1.0 + (-1.702 * x).exp()),
    };
    y as f32
}

/// dy/dx at x, in f64.
pub fn unary_grad_fn(op: Unary, x: f32) -> f32 {
    let x = x as f64;
    let g = match op {
        Unary::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Unary::Silu => {
            let s = 1.0 / (1.0 + (-x).exp());
            s * (1.0 + x * (1.0 - s))
        }
        Unary::Gelu => {
            let cdf = 0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            cdf + x * pdf
        }
        Unary::GeluTanh => {
            let u = SQRT_2_OVER_PI * (x + GELU_TANH_C * x * x * x);
            let t = u.tanh();
            let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_TANH_C * x * x);
            0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
        }
        Unary::QuickGelu => {
            let s = 1.0 / (1.0 + (-1.702 * x).exp());
            s + 1.702 * x * s * (1.0 - s)
        }
    };
    g as f32
}

pub fn unary(x: &Tensor, op: Unary) -> Result<Tensor> {
    let xs = x.cpu_f32("unary")?;
    let out = par_map(xs, |v| unary_fn(op, v));
    Tensor::from_vec(out, x.shape().clone(), &Device::Cpu)
}

/// dx = dy * f'(x).
pub fn unary_backward(dy: &Tensor, x: &Tensor, op: Unary) -> Result<Tensor> {
    let xs = x.cpu_f32("unary_backward")?;
    let dys = dy.cpu_f32("unary_backward")?;
    let out: Vec<f32> = xs.par_iter().zip(dys.par_iter()).map(|(&x, &g)| g * unary_grad_fn(op, x)).collect();
    Tensor::from_vec(out, x.shape().clone(), &Device::Cpu)
}

/// x: [.., 2F] -> [.., F]: h * gelu(g) with h the first half of the last dim, g the second.
pub fn geglu(x: &Tensor) -> Result<Tensor> {
    let xs = x.cpu_f32("geglu")?;
    let two_f = *x.dims().last().expect("geglu checks rank");
    let f = two_f / 2;
    let mut out = vec![0.0f32; xs.len() / 2];
    out.par_chunks_mut(f.max(1)).zip(xs.par_chunks(two_f.max(1))).for_each(|(o, row)| {
        for j in 0..f {
            o[j] = row[j] * unary_fn(Unary::Gelu, row[f + j]);
        }
    });
    let mut dims = x.dims().to_vec();
    *dims.last_mut().expect("rank >= 1") = f;
    Tensor::from_vec(out, dims, &Device::Cpu)
}

fn apply(op: BinaryOp, a: f32, b: f32) -> f32 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
    }
}

/// out = a op b with numpy broadcasting, as planned by `ops::elementwise`.
pub fn binary(a: &Tensor, b: &Tensor, op: BinaryOp, plan: &BroadcastPlan) -> Result<Tensor> {
    let av = a.cpu_f32("binary")?;
    let bv = b.cpu_f32("binary")?;
    let n = plan.out.numel();
    let out: Vec<f32> = if av.len() == n && bv.len() == n {
        av.par_iter().zip(bv.par_iter()).map(|(&x, &y)| apply(op, x, y)).collect()
    } else if bv.len() == 1 {
        let y = bv[0];
        av.par_iter().map(|&x| apply(op, x, y)).collect()
    } else {
        let dims = plan.out.dims();
        (0..n)
            .into_par_iter()
            .map(|i| {
                let (mut rem, mut ia, mut ib) = (i, 0usize, 0usize);
                for d in (0..dims.len()).rev() {
                    let idx = rem % dims[d];
                    rem /= dims[d];
                    ia += idx * plan.a_strides[d];
                    ib += idx * plan.b_strides[d];
                }
                apply(op, av[ia], bv[ib])
            })
            .collect()
    };
    Tensor::from_vec(out, plan.out.clone(), &Device::Cpu)
}

/// x * mul + add.
pub fn affine(x: &Tensor, mul: f32, add: f32) -> Result<Tensor> {
    let xs = x.cpu_f32("affine")?;
    let out = par_map(xs, |v| v * mul + add);
    Tensor::from_vec(out, x.shape().clone(), &Device::Cpu)
}

/// x converted to `dtype`: floats round to the nearest even, floats to ints truncate toward
/// zero (the host storage's conversion).
pub fn cast(x: &Tensor, dtype: DType) -> Result<Tensor> {
    let (s, offset) = x.cpu_storage("to_dtype")?;
    Ok(Tensor::from_storage(Storage::Cpu(s.window_to_dtype(offset, x.numel(), dtype)), x.shape().clone(), dtype))
}
