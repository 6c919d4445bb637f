//! Elementwise ops on the CPU (f32): activations and their derivatives, GEGLU, broadcasting
//! binary ops, affine, and dtype conversion (any dtype). The reference for
//! kernels/elementwise.cu. The forward activations run vmath's vectorised f32 functions; their
//! f64 definitions here (`unary_fn`, `erf`) are the reference those are tested against, and
//! the derivatives use them directly.

use super::vmath::{self, simd};
use super::{par_map, CHUNK};
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

/// y = f(x) with f32 arithmetic (vmath), within a few ulp of `unary_fn`.
pub fn unary(x: &Tensor, op: Unary) -> Result<Tensor> {
    let xs = x.cpu_f32("unary")?;
    let out = match op {
        Unary::Relu => par_map(xs, |v| v.max(0.0)),
        Unary::Silu => par_map(xs, vmath::silu),
        Unary::Gelu => par_map(xs, vmath::gelu),
        Unary::GeluTanh => par_map(xs, vmath::gelu_tanh),
        Unary::QuickGelu => par_map(xs, vmath::quick_gelu),
    };
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
        let (h, g) = row.split_at(f);
        simd(|| {
            for ((o, &h), &g) in o.iter_mut().zip(h).zip(g) {
                *o = h * vmath::gelu(g);
            }
        })
    });
    let mut dims = x.dims().to_vec();
    *dims.last_mut().expect("rank >= 1") = f;
    Tensor::from_vec(out, dims, &Device::Cpu)
}

/// How an operand is read along one run of consecutive output elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// Consecutive elements, as the output's.
    Slice,
    /// One element for the whole run (broadcast).
    Scalar,
}

/// The longest run of consecutive output elements (a suffix of its dims) along which each
/// operand is read one way: (first dim of the run, run length, how a reads, how b reads).
/// The last dim always qualifies: there a stride is 1 (Slice) or 0 (Scalar).
fn inner_run(plan: &BroadcastPlan) -> (usize, usize, Read, Read) {
    let dims = plan.out.dims();
    let out_strides = plan.out.strides();
    let kind = |strides: &[usize], from: usize| -> Option<Read> {
        let used = (from..dims.len()).filter(|&d| dims[d] > 1);
        if used.clone().all(|d| strides[d] == out_strides[d]) {
            Some(Read::Slice)
        } else if used.clone().all(|d| strides[d] == 0) {
            Some(Read::Scalar)
        } else {
            None
        }
    };
    let mut best = (dims.len(), 1, Read::Scalar, Read::Scalar);
    for from in (0..dims.len()).rev() {
        match (kind(&plan.a_strides, from), kind(&plan.b_strides, from)) {
            (Some(ka), Some(kb)) => best = (from, dims[from..].iter().product(), ka, kb),
            _ => break,
        }
    }
    best
}

/// The elements an operand read as `k` gives a run of `len` starting at `at`.
fn window(v: &[f32], k: Read, at: usize, len: usize) -> &[f32] {
    match k {
        Read::Slice => &v[at..at + len],
        Read::Scalar => &v[at..at + 1],
    }
}

/// out = f(a, b) along one run, a and b read as `ka` and `kb`.
#[inline(always)]
fn run(out: &mut [f32], a: &[f32], ka: Read, b: &[f32], kb: Read, f: impl Fn(f32, f32) -> f32) {
    simd(|| match (ka, kb) {
        (Read::Slice, Read::Slice) => out.iter_mut().zip(a).zip(b).for_each(|((o, &x), &y)| *o = f(x, y)),
        (Read::Slice, Read::Scalar) => out.iter_mut().zip(a).for_each(|(o, &x)| *o = f(x, b[0])),
        (Read::Scalar, Read::Slice) => out.iter_mut().zip(b).for_each(|(o, &y)| *o = f(a[0], y)),
        (Read::Scalar, Read::Scalar) => out.fill(f(a[0], b[0])),
    })
}

/// out = a op b with numpy broadcasting, as planned by `ops::elementwise`: the output is cut
/// into runs along which each operand is contiguous or constant (`inner_run`), so every
/// broadcast the models use (a bias row, a per-channel value, a scalar) is a vectorised loop.
pub fn binary(a: &Tensor, b: &Tensor, op: BinaryOp, plan: &BroadcastPlan) -> Result<Tensor> {
    let av = a.cpu_f32("binary")?;
    let bv = b.cpu_f32("binary")?;
    let mut out = vec![0.0f32; plan.out.numel()];
    let (from, len, ka, kb) = inner_run(plan);
    if len == 0 {
        return Tensor::from_vec(out, plan.out.clone(), &Device::Cpu);
    }
    let dims = &plan.out.dims()[..from];
    // The element offsets of a and b where output run `r` starts.
    let offsets = |mut r: usize| {
        let (mut ia, mut ib) = (0, 0);
        for d in (0..dims.len()).rev() {
            let idx = r % dims[d];
            r /= dims[d];
            ia += idx * plan.a_strides[d];
            ib += idx * plan.b_strides[d];
        }
        (ia, ib)
    };
    let runs_per_task = (CHUNK / len).max(1);
    out.par_chunks_mut(runs_per_task * len).enumerate().for_each(|(t, task)| {
        for (i, o) in task.chunks_mut(len).enumerate() {
            let (ia, ib) = offsets(t * runs_per_task + i);
            let (x, y) = (window(av, ka, ia, len), window(bv, kb, ib, len));
            match op {
                BinaryOp::Add => run(o, x, ka, y, kb, |p, q| p + q),
                BinaryOp::Sub => run(o, x, ka, y, kb, |p, q| p - q),
                BinaryOp::Mul => run(o, x, ka, y, kb, |p, q| p * q),
                BinaryOp::Div => run(o, x, ka, y, kb, |p, q| p / q),
            }
        }
    });
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
