//! Multi-head scaled dot-product attention, flash-style on both backends (online softmax over
//! key chunks; the [Nq, Nk] score matrix never exists in memory).
//!
//! Layout legend: B = batch, Nq = query tokens, Nk = key/value tokens, H = heads, D = head dim.
//! Tensors are token-major, [B, N, H, D]: what a linear projection [B, N, H*D] is, reshaped for
//! free, and what the output projection takes back after a free reshape to [B, Nq, H*D]. Row
//! stride H*D elements; head h's vector starts at h*D. No permutes anywhere.
//!
//! Used by the SD U-Net (self-attention up to 9216 tokens, cross-attention over 77 text tokens,
//! D = 40/64/80/160), the VAE mid-block (one head, D = 512), the CLIP text encoder (causal,
//! 77 tokens, D = 64) and DiT (D = 72).

use super::{check_float, check_same_device, check_same_dtype};
use crate::tensor::{Device, Tensor};
use crate::{ensure_op, Error, Result};
pub use crate::plan::attention::{AttentionParams, MAX_HEAD_DIM};

const OP: &str = "attention";

fn dims4_of(name: &str, t: &Tensor) -> Result<(usize, usize, usize, usize)> {
    match t.dims() {
        &[b, n, h, d] => Ok((b, n, h, d)),
        _ => Err(Error::op(OP, format!("{name} must be [B, N, H, D], got shape {}", t.shape()))),
    }
}

/// q: [B, Nq, H, D], k: [B, Nk, H, D], v: [B, Nk, H, D] -> [B, Nq, H, D]
///
/// out[b, i, h] = sum_j softmax_j(scale * q[b,i,h] . k[b,j,h]) v[b,j,h]; with `causal`, key j
/// is visible to query i only if j <= i (requires Nq == Nk). D at most 512; Nk >= 1. All three
/// of one float dtype on one device (f32 on the CPU). The backends take D in multiples of 8: a
/// head dim that is not one (tiny test models) runs zero-padded to the next multiple, which
/// leaves every product q . k and the output's first D columns unchanged.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32, causal: bool) -> Result<Tensor> {
    check_float(OP, q)?;
    check_same_device(OP, &[q, k, v])?;
    check_same_dtype(OP, &[q, k, v])?;
    let (b, nq, h, d) = dims4_of("q", q)?;
    let (bk, nk, hk, dk) = dims4_of("k", k)?;
    dims4_of("v", v)?;
    ensure_op!(k.shape() == v.shape(), OP, "k {} and v {} must have the same shape", k.shape(), v.shape());
    ensure_op!(bk == b, OP, "q {} and k {} differ in batch size ({b} vs {bk})", q.shape(), k.shape());
    ensure_op!(hk == h, OP, "q {} and k {} differ in head count ({h} vs {hk})", q.shape(), k.shape());
    ensure_op!(dk == d, OP, "q {} and k {} differ in head dim ({d} vs {dk})", q.shape(), k.shape());
    ensure_op!(
        d > 0 && d <= MAX_HEAD_DIM,
        OP,
        "head dim D = {d} (q {}) is not supported: D must be between 1 and {MAX_HEAD_DIM}",
        q.shape()
    );
    ensure_op!(nk > 0, OP, "k {} has no tokens to attend to", k.shape());
    ensure_op!(
        !causal || nq == nk,
        OP,
        "causal attention needs as many queries as keys: q {} has {nq}, k {} has {nk}",
        q.shape(),
        k.shape()
    );
    ensure_op!(scale.is_finite(), OP, "scale must be finite, got {scale}");
    if !d.is_multiple_of(8) {
        // [B, N, H, D] -> [B, N, H, D8], zeros in the added columns; the scale stays D's.
        let d8 = d.next_multiple_of(8);
        let pad = |t: &Tensor| -> Result<Tensor> {
            let (b, n, h, _) = dims4_of("x", t)?;
            let zeros = Tensor::zeros([b, n, h, d8 - d], t.dtype(), &t.device())?;
            super::layout::cat(&[t, &zeros], -1)
        };
        let o = attention(&pad(q)?, &pad(k)?, &pad(v)?, scale, causal)?;
        return super::layout::narrow(&o, -1, 0, d);
    }
    let p = AttentionParams { batch: b, nq, nk, heads: h, head_dim: d, scale, causal };
    super::flops::add(4 * (p.batch * p.heads * p.nq * p.nk * p.head_dim) as u64);
    match q.device() {
        Device::Cpu => crate::cpu::attention::attention(q, k, v, &p),
        Device::Cuda(dev) => crate::cuda::attention::attention(&dev, q, k, v, &p),
    }
}
