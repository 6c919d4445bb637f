//! Data movement on the CPU, for every dtype (each op is generic over the element type and
//! dispatched on the tensor's dtype): permute, cat, narrow, nearest upsampling (2x and to any
//! size), row gather.
//! The reference for kernels/layout.cu.

use crate::plan::layout::{nearest_source_index, CatPlan, NarrowPlan};
use crate::tensor::{CpuSlice, DType, Device, Tensor};
use crate::Result;
use half::{bf16, f16};
use rayon::prelude::*;

/// Calls the generic `$f::<T>(args)` with T the element type of `$dtype`.
macro_rules! typed {
    ($dtype:expr, $f:ident($($arg:expr),*)) => {
        match $dtype {
            DType::F32 => $f::<f32>($($arg),*),
            DType::F16 => $f::<f16>($($arg),*),
            DType::BF16 => $f::<bf16>($($arg),*),
            DType::I64 => $f::<i64>($($arg),*),
            DType::I32 => $f::<i32>($($arg),*),
        }
    };
}

/// out[i] = x at the offset of out's multi-index i under x's strides taken in `perm` order.
pub fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    typed!(x.dtype(), permute_t(x, perm))
}

fn permute_t<T: CpuSlice>(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let xs = x.cpu_slice::<T>("permute")?;
    let in_strides = x.shape().strides();
    let dims: Vec<usize> = perm.iter().map(|&p| x.dims()[p]).collect();
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let out: Vec<T> = (0..x.numel())
        .into_par_iter()
        .map(|i| {
            let (mut rem, mut off) = (i, 0);
            for d in (0..dims.len()).rev() {
                off += (rem % dims[d]) * strides[d];
                rem /= dims[d];
            }
            xs[off]
        })
        .collect();
    Tensor::from_vec(out, dims, &Device::Cpu)
}

/// For each outer index, the rows of every input one after the other.
pub fn cat(xs: &[&Tensor], plan: &CatPlan) -> Result<Tensor> {
    typed!(xs[0].dtype(), cat_t(xs, plan))
}

fn cat_t<T: CpuSlice>(xs: &[&Tensor], plan: &CatPlan) -> Result<Tensor> {
    let slices = xs.iter().map(|x| x.cpu_slice::<T>("cat")).collect::<Result<Vec<_>>>()?;
    let mut out = Vec::with_capacity(plan.out.numel());
    for o in 0..plan.outer {
        for (s, &size) in slices.iter().zip(&plan.sizes) {
            let row = size * plan.inner;
            out.extend_from_slice(&s[o * row..(o + 1) * row]);
        }
    }
    Tensor::from_vec(out, plan.out.clone(), &Device::Cpu)
}

/// x: [outer, size, inner] -> [outer, len, inner], elements start..start + len of the middle dim.
pub fn narrow(x: &Tensor, plan: &NarrowPlan) -> Result<Tensor> {
    typed!(x.dtype(), narrow_t(x, plan))
}

fn narrow_t<T: CpuSlice>(x: &Tensor, p: &NarrowPlan) -> Result<Tensor> {
    let xs = x.cpu_slice::<T>("narrow")?;
    let mut v = Vec::with_capacity(p.out.numel());
    for o in 0..p.outer {
        let base = (o * p.size + p.start) * p.inner;
        v.extend_from_slice(&xs[base..base + p.len * p.inner]);
    }
    Tensor::from_vec(v, p.out.clone(), &Device::Cpu)
}

/// [N, C, H, W] -> [N, C, 2H, 2W], out[.., y, x] = in[.., y/2, x/2].
pub fn upsample_nearest2x(x: &Tensor, dims: (usize, usize, usize, usize)) -> Result<Tensor> {
    typed!(x.dtype(), upsample_t(x, dims))
}

fn upsample_t<T: CpuSlice>(x: &Tensor, (n, c, h, w): (usize, usize, usize, usize)) -> Result<Tensor> {
    let xs = x.cpu_slice::<T>("upsample_nearest2x")?;
    let (oh, ow) = (2 * h, 2 * w);
    let out: Vec<T> = (0..n * c * oh * ow)
        .into_par_iter()
        .map(|i| {
            let (ox, oy, nc) = (i % ow, (i / ow) % oh, i / (ow * oh));
            xs[(nc * h + oy / 2) * w + ox / 2]
        })
        .collect();
    Tensor::from_vec(out, [n, c, oh, ow], &Device::Cpu)
}

/// [N, C, H, W] -> [N, C, OH, OW], out[.., y, x] = in[.., sy(y), sx(x)] with torch's nearest
/// source indices (`plan::layout::nearest_source_index`).
pub fn upsample_nearest(x: &Tensor, dims: (usize, usize, usize, usize), out_hw: (usize, usize)) -> Result<Tensor> {
    typed!(x.dtype(), upsample_any_t(x, dims, out_hw))
}

fn upsample_any_t<T: CpuSlice>(x: &Tensor, (n, c, h, w): (usize, usize, usize, usize), (oh, ow): (usize, usize)) -> Result<Tensor> {
    let xs = x.cpu_slice::<T>("upsample_nearest")?;
    let sy: Vec<usize> = (0..oh).map(|y| nearest_source_index(y, h, oh)).collect();
    let sx: Vec<usize> = (0..ow).map(|x| nearest_source_index(x, w, ow)).collect();
    let out: Vec<T> = (0..n * c * oh * ow)
        .into_par_iter()
        .map(|i| {
            let (ox, oy, nc) = (i % ow, (i / ow) % oh, i / (ow * oh));
            xs[(nc * h + sy[oy]) * w + sx[ox]]
        })
        .collect();
    Tensor::from_vec(out, [n, c, oh, ow], &Device::Cpu)
}

/// x: [R, ..] -> `out` = [idx.len(), ..]: row idx[t] of x for each t (indices checked in ops).
pub fn gather_rows(x: &Tensor, idx: &[i64], out: Vec<usize>) -> Result<Tensor> {
    typed!(x.dtype(), gather_rows_t(x, idx, out))
}

fn gather_rows_t<T: CpuSlice>(x: &Tensor, idx: &[i64], out: Vec<usize>) -> Result<Tensor> {
    let xs = x.cpu_slice::<T>("gather_rows")?;
    let row = x.numel() / x.dims()[0].max(1);
    let mut v = Vec::with_capacity(idx.len() * row);
    for &i in idx {
        let i = i as usize;
        v.extend_from_slice(&xs[i * row..(i + 1) * row]);
    }
    Tensor::from_vec(v, out, &Device::Cpu)
}
