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
/// is visible to query i only if j <= i (requires Nq == Nk). Any D from 1 to 512 (the tiny
/// test models of diffusers and transformers have D = 4 or 12): the CUDA kernels take multiples
/// of 8, so on CUDA another D is zero-padded to the next multiple (a zero column adds nothing
/// to q . k, and the output's padded columns are dropped; `scale` is the caller's, from the
/// true D). Nk >= 1. All three of one float dtype on one device (f32 on the CPU).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32, causal: bool) -> Result<Tensor> {
    let _p = crate::profile::op("attention");
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
    ensure_op!(d > 0 && d <= MAX_HEAD_DIM, OP, "head dim D = {d} (q {}) is not supported: D must be between 1 and {MAX_HEAD_DIM}", q.shape());
    ensure_op!(nk > 0, OP, "k {} has no tokens to attend to", k.shape());
    ensure_op!(
        !causal || nq == nk,
        OP,
        "causal attention needs as many queries as keys: q {} has {nq}, k {} has {nk}",
        q.shape(),
        k.shape()
    );
    ensure_op!(scale.is_finite(), OP, "scale must be finite, got {scale}");
    let p = AttentionParams { batch: b, nq, nk, heads: h, head_dim: d, scale, causal };
    super::flops::add(4 * (p.batch * p.heads * p.nq * p.nk * p.head_dim) as u64);
    match q.device() {
        Device::Cpu => crate::cpu::attention::attention(q, k, v, &p),
        Device::Cuda(dev) if d % 8 == 0 => crate::cuda::attention::attention(&dev, q, k, v, &p),
        Device::Cuda(dev) => {
            // [B, N, H, D] -> [B, N, H, DP] with zeros in D..DP, DP = round_up(D, 8).
            let dp = d.next_multiple_of(8);
            let pad = |x: &Tensor| -> Result<Tensor> {
                let (b, n, h, _) = dims4_of("padded", x)?;
                let zeros = Tensor::zeros([b, n, h, dp - d], x.dtype(), &x.device())?;
                super::layout::cat(&[x, &zeros], 3)
            };
            let padded = AttentionParams { head_dim: dp, ..p };
            let out = crate::cuda::attention::attention(&dev, &pad(q)?, &pad(k)?, &pad(v)?, &padded)?;
            super::layout::narrow(&out, 3, 0, d)
        }
    }
}
