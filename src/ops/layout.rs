//! Data movement: permute, cat, narrow (a copy), nearest upsampling (2x, or to any size as
//! torch's `interpolate(size=..)`), embedding lookup, row
//! gather, and the NCHW <-> token transposes of the U-Net's transformer blocks. No arithmetic,
//! so every dtype is moved as is, on both backends (upsampling takes float dtypes only).
//! Index operands (ids, row indices) are checked against their range on the host.

use super::elementwise::to_dtype;
use super::{check_same_device, check_same_dtype};
use crate::cuda;
use crate::tensor::{DType, Device, Shape, Tensor};
use crate::{ensure_op, Error, Result};
pub use crate::plan::layout::{batched_transpose, nearest_source_index, CatPlan, NarrowPlan};

/// The most dims permute takes (the CUDA kernels' by-value shape structs hold 6).
pub const MAX_PERMUTE_RANK: usize = cuda::launch::MAX_DIMS;

/// x: [d0, .., d(r-1)] (r <= 6) -> [d(perm[0]), .., d(perm[r-1])], a copy: out[i0, .., i(r-1)]
/// = x at index i(q) along dim perm[q].
pub fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let _p = crate::profile::op("permute");
    let r = x.rank();
    ensure_op!(r <= MAX_PERMUTE_RANK, "permute", "x {} has rank {r}; permute takes rank <= {MAX_PERMUTE_RANK}", x.shape());
    let mut seen = vec![false; r];
    let is_perm = perm.len() == r && perm.iter().all(|&p| p < r && !std::mem::replace(&mut seen[p], true));
    ensure_op!(is_perm, "permute", "{perm:?} is not a permutation of the {r} dims of x {}", x.shape());
    match x.device() {
        Device::Cpu => crate::cpu::layout::permute(x, perm),
        Device::Cuda(d) => cuda::layout::permute(&d, x, perm),
    }
}

/// xs[i]: [.., Di, ..] (same rank, dtype, device and other dims) -> [.., sum Di, ..] along
/// `dim` (negative counts from the end).
pub fn cat(xs: &[&Tensor], dim: isize) -> Result<Tensor> {
    let _p = crate::profile::op("cat");
    let first = *xs.first().ok_or_else(|| Error::op("cat", "no tensors to concatenate"))?;
    check_same_device("cat", xs)?;
    check_same_dtype("cat", xs)?;
    let d = first.shape().resolve_dim(dim).map_err(|_| Error::op("cat", format!("dim {dim} is out of range for {}", first.shape())))?;
    for x in &xs[1..] {
        let same = x.rank() == first.rank() && x.dims().iter().zip(first.dims()).enumerate().all(|(i, (a, b))| i == d || a == b);
        ensure_op!(same, "cat", "{} and {} differ in a dim other than the cat dim {d}", first.shape(), x.shape());
    }
    let sizes: Vec<usize> = xs.iter().map(|x| x.dims()[d]).collect();
    let mut out = first.dims().to_vec();
    out[d] = sizes.iter().sum();
    let plan = CatPlan {
        outer: first.dims()[..d].iter().product(),
        inner: first.dims()[d + 1..].iter().product(),
        sizes,
        out: Shape::new(out),
    };
    match first.device() {
        Device::Cpu => crate::cpu::layout::cat(xs, &plan),
        Device::Cuda(dev) => cuda::layout::cat(&dev, xs, &plan),
    }
}

/// x: [.., D, ..] -> [.., len, ..]: elements start..start + len along `dim`, copied.
pub fn narrow(x: &Tensor, dim: isize, start: usize, len: usize) -> Result<Tensor> {
    let _p = crate::profile::op("narrow");
    let d = x.shape().resolve_dim(dim).map_err(|_| Error::op("narrow", format!("dim {dim} is out of range for x {}", x.shape())))?;
    let size = x.dims()[d];
    ensure_op!(start + len <= size, "narrow", "range {start}..{} is out of bounds for dim {d} (size {size}) of x {}", start + len, x.shape());
    let mut out = x.dims().to_vec();
    out[d] = len;
    let plan = NarrowPlan {
        outer: x.dims()[..d].iter().product(),
        size,
        inner: x.dims()[d + 1..].iter().product(),
        start,
        len,
        out: Shape::new(out),
    };
    match x.device() {
        Device::Cpu => crate::cpu::layout::narrow(x, &plan),
        Device::Cuda(dev) => cuda::layout::narrow(&dev, x, &plan),
    }
}

/// x: [N, C, H, W] (float) -> [N, C, 2H, 2W], nearest neighbour: out[.., y, x] = in[.., y/2, x/2]
/// (torch's `interpolate(scale_factor=2, mode="nearest")`).
pub fn upsample_nearest2x(x: &Tensor) -> Result<Tensor> {
    let _p = crate::profile::op("upsample_nearest");
    let (n, c, h, w) = x.dims4("upsample_nearest2x")?;
    ensure_op!(x.dtype().is_float(), "upsample_nearest2x", "expected a float tensor, got {} of shape {}", x.dtype(), x.shape());
    match x.device() {
        Device::Cpu => crate::cpu::layout::upsample_nearest2x(x, (n, c, h, w)),
        Device::Cuda(d) => cuda::layout::upsample_nearest2x(&d, x, (n, c, h, w)),
    }
}

/// x: [N, C, H, W] (float) -> [N, C, out_h, out_w], nearest neighbour as torch's
/// `interpolate(size=(out_h, out_w), mode="nearest")`: out[.., y, x] = in[.., sy, sx] with
/// sy = `nearest_source_index(y, H, out_h)` (same for x). The U-Net's upsamplers use it when the
/// latent size is not a multiple of 2^levels (diffusers' `upsample_size`).
pub fn upsample_nearest(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let _p = crate::profile::op("upsample_nearest");
    let (n, c, h, w) = x.dims4("upsample_nearest")?;
    ensure_op!(x.dtype().is_float(), "upsample_nearest", "expected a float tensor, got {} of shape {}", x.dtype(), x.shape());
    ensure_op!(
        out_h > 0 && out_w > 0 && h > 0 && w > 0,
        "upsample_nearest",
        "cannot resize x {} to {out_h}x{out_w}: every spatial size must be at least 1",
        x.shape()
    );
    match x.device() {
        Device::Cpu => crate::cpu::layout::upsample_nearest(x, (n, c, h, w), (out_h, out_w)),
        Device::Cuda(d) => cuda::layout::upsample_nearest(&d, x, (n, c, h, w), (out_h, out_w)),
    }
}

/// The i64 host copy of an index tensor, each value checked to lie in 0..limit.
fn host_indices(op: &'static str, what: &str, idx: &Tensor, limit: usize, of: &Shape) -> Result<Vec<i64>> {
    let host = to_dtype(idx, DType::I64)?.to_vec::<i64>()?;
    if let Some((pos, &bad)) = host.iter().enumerate().find(|(_, &v)| v < 0 || v as u64 >= limit as u64) {
        return Err(Error::op(op, format!("{what} {bad} at position {pos} of {} is out of range 0..{limit} for {of}", idx.shape())));
    }
    Ok(host)
}

/// ids: i64 or i32 [..], table: [V, D] -> [.., D]: row ids[..] of the table. An id outside
/// 0..V is an error naming it and V.
pub fn embedding(ids: &Tensor, table: &Tensor) -> Result<Tensor> {
    let _p = crate::profile::op("embedding");
    check_same_device("embedding", &[ids, table])?;
    ensure_op!(matches!(ids.dtype(), DType::I64 | DType::I32), "embedding", "ids {} must be i64 or i32, got {}", ids.shape(), ids.dtype());
    let (v, d) = table.dims2("embedding")?;
    let host = host_indices("embedding", "id", ids, v, table.shape())?;
    let mut out = ids.dims().to_vec();
    out.push(d);
    match table.device() {
        Device::Cpu => crate::cpu::layout::gather_rows(table, &host, out),
        Device::Cuda(dev) => cuda::layout::gather_rows(&dev, table, &to_dtype(ids, DType::I64)?, out),
    }
}

/// x: [R, ..], idx: i64 [n] -> [n, ..]: out[t] = x[idx[t]]. An index outside 0..R is an error.
pub fn gather_rows(x: &Tensor, idx: &Tensor) -> Result<Tensor> {
    let _p = crate::profile::op("gather_rows");
    check_same_device("gather_rows", &[x, idx])?;
    ensure_op!(idx.dtype() == DType::I64, "gather_rows", "idx {} must be i64, got {}", idx.shape(), idx.dtype());
    let n = idx.dims1("gather_rows")?;
    let r = *x.dims().first().ok_or_else(|| Error::op("gather_rows", "x is rank-0; expected [R, ..]"))?;
    let host = host_indices("gather_rows", "index", idx, r, x.shape())?;
    let mut out = x.dims().to_vec();
    out[0] = n;
    match x.device() {
        Device::Cpu => crate::cpu::layout::gather_rows(x, &host, out),
        Device::Cuda(dev) => cuda::layout::gather_rows(&dev, x, idx, out),
    }
}

/// x: [N, C, H, W] -> [N, H*W, C] (out[n, y*W + x, c] = in[n, c, y, x]).
pub fn nchw_to_tokens(x: &Tensor) -> Result<Tensor> {
    let _p = crate::profile::op("nchw_to_tokens");
    let (n, c, h, w) = x.dims4("nchw_to_tokens")?;
    transpose_last2(&x.reshape([n, c, h * w])?)
}

/// x: [N, H*W, C] -> [N, C, H, W], the inverse of `nchw_to_tokens`.
pub fn tokens_to_nchw(x: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let _p = crate::profile::op("tokens_to_nchw");
    let (n, l, c) = x.dims3("tokens_to_nchw")?;
    ensure_op!(l == h * w, "tokens_to_nchw", "x {} has {l} tokens, expected h*w = {h}*{w} = {}", x.shape(), h * w);
    transpose_last2(x)?.reshape([n, c, h, w])
}

/// x: [B, R, C] -> [B, C, R].
fn transpose_last2(x: &Tensor) -> Result<Tensor> {
    match x.device() {
        Device::Cpu => crate::cpu::layout::permute(x, &[0, 2, 1]),
        Device::Cuda(d) => {
            let (b, r, c) = x.dims3("transpose")?;
            cuda::layout::transpose(&d, x, b, r, c)
        }
    }
}
