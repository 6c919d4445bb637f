//! The k-SAE op family, in the order one training step runs it: the forward (centre, the fused
//! TopK encoder, the sparse decode, column statistics), the sparse backward, then the optimiser
//! (one fused Adam step over the four parameters, W_dec's rows back to unit norm) and the
//! dead-latent bookkeeping. Each op checks its operands once (shapes, dtypes, one device) and
//! runs the CPU reference (`cpu::sae`) or the CUDA kernels (`cuda::sae`, kernels/sae.cu), which
//! trust the checks. The trainer (src/sae) is written in these ops only.
//!
//! Legend: B = rows, d = input dim, n = latents, k / kk = entries per row of a code.
//! Parameters are f32; codes are (vals f32 [B, kk] descending per row, idx i32 [B, kk]).

use super::{add, check_same_device, gather_rows, matmul, to_dtype, topk};
use crate::cuda;
use crate::plan::optim::AdamScalars;
use crate::tensor::{DType, Device, Tensor};
use crate::{ensure_op, Result};
pub use crate::plan::sae::{AdamSlot, AdamSlots, AuxBackward, Centered, Code, Decoded, Grads, SparseBackward};

fn check_f32(op: &'static str, name: &str, t: &Tensor) -> Result<()> {
    ensure_op!(t.dtype() == DType::F32, op, "{name} {} must be f32, got {}", t.shape(), t.dtype());
    Ok(())
}

fn check_code(op: &'static str, code: &Code, rows: usize, n: usize) -> Result<usize> {
    let (r, kk) = code.vals.dims2(op)?;
    ensure_op!(code.idx.dims() == code.vals.dims(), op, "code idx {} and vals {} differ in shape", code.idx.shape(), code.vals.shape());
    ensure_op!(r == rows, op, "code vals {} has {r} rows, the input has {rows}", code.vals.shape());
    ensure_op!(code.idx.dtype() == DType::I32, op, "code idx {} must be i32, got {}", code.idx.shape(), code.idx.dtype());
    check_f32(op, "code vals", &code.vals)?;
    ensure_op!(kk <= n, op, "code vals {} selects more latents than the {n} there are", code.vals.shape());
    Ok(kk)
}

/// x: f32 [B, d], b_dec: f32 [d] -> xc = x - b_dec (and its bf16 copy on CUDA).
pub fn center(x: &Tensor, b_dec: &Tensor) -> Result<Centered> {
    let _p = crate::profile::op("sae_center");
    const OP: &str = "sae_center";
    check_same_device(OP, &[x, b_dec])?;
    check_f32(OP, "x", x)?;
    check_f32(OP, "b_dec", b_dec)?;
    let (_, d) = x.dims2(OP)?;
    ensure_op!(b_dec.dims() == [d], OP, "b_dec {} must be [{d}] for x {}", b_dec.shape(), x.shape());
    match x.device() {
        Device::Cpu => Ok(Centered { xc: crate::cpu::sae::center(x, b_dec)?, xc16: None }),
        Device::Cuda(dev) => {
            let (xc, xc16) = cuda::sae::center(&dev, x, b_dec)?;
            Ok(Centered { xc, xc16: Some(xc16) })
        }
    }
}

fn check_encoder(op: &'static str, xc: &Tensor, w_enc: &Tensor, b_enc: &Tensor) -> Result<usize> {
    check_same_device(op, &[xc, w_enc, b_enc])?;
    for (name, t) in [("xc", xc), ("W_enc", w_enc), ("b_enc", b_enc)] {
        check_f32(op, name, t)?;
    }
    let (_, d) = xc.dims2(op)?;
    let (dw, n) = w_enc.dims2(op)?;
    ensure_op!(dw == d, op, "W_enc {} takes d = {dw}, xc {} has d = {d}", w_enc.shape(), xc.shape());
    ensure_op!(b_enc.dims() == [n], op, "b_enc {} must be [{n}] for W_enc {}", b_enc.shape(), w_enc.shape());
    Ok(n)
}

/// xc: f32 [B, d], W_enc: f32 [d, n], b_enc: f32 [n] -> relu?(xc W_enc + b_enc): f32 [B, n],
/// the dense pre-activation (the analysis' "hidden_post" with relu). f32 on both backends.
pub fn encode_dense(xc: &Tensor, w_enc: &Tensor, b_enc: &Tensor, relu: bool) -> Result<Tensor> {
    let _p = crate::profile::op("sae_encode_dense");
    check_encoder("sae_encode_dense", xc, w_enc, b_enc)?;
    match xc.device() {
        Device::Cpu => {
            let mut pre = matmul(xc, w_enc)?;
            crate::cpu::sae::add_bias(&mut pre, b_enc, relu)?;
            Ok(pre)
        }
        Device::Cuda(_) => {
            let pre = add(&matmul(xc, w_enc)?, b_enc)?;
            if relu {
                super::relu(&pre)
            } else {
                Ok(pre)
            }
        }
    }
}

/// The k largest of relu?(xc W_enc + b_enc) per row. On CUDA, k <= 64 with `w_enc16` (W_enc's
/// bf16 shadow) runs the fused bf16 encoder, which never writes the dense pre-activation; any
/// other case (and the CPU) computes the f32 dense pre-activation and takes its top-k.
pub fn encode_topk(xc: &Centered, w_enc: &Tensor, w_enc16: Option<&Tensor>, b_enc: &Tensor, k: usize, relu: bool) -> Result<Code> {
    let _p = crate::profile::op("sae_encode_topk");
    const OP: &str = "sae_encode_topk";
    let n = check_encoder(OP, &xc.xc, w_enc, b_enc)?;
    ensure_op!(k >= 1 && k <= n, OP, "k = {k} must be in 1..={n} for W_enc {}", w_enc.shape());
    let device = xc.xc.device();
    if let (Device::Cuda(dev), Some(x16), Some(w16)) = (&device, &xc.xc16, w_enc16) {
        if k <= cuda::sae::FUSED_MAX_K {
            ensure_op!(
                w16.dims() == w_enc.dims() && w16.dtype() == DType::BF16 && x16.dims() == xc.xc.dims() && x16.dtype() == DType::BF16,
                OP,
                "the bf16 copies xc16 {} ({}) and W_enc16 {} ({}) must match xc {} and W_enc {}",
                x16.shape(),
                x16.dtype(),
                w16.shape(),
                w16.dtype(),
                xc.xc.shape(),
                w_enc.shape()
            );
            return cuda::sae::encode_topk(dev, x16, w16, b_enc, k, relu);
        }
    }
    ensure_op!(device.is_cpu() || k <= cuda::reduce::TOPK_MAX_K_CUDA, OP, "k = {k} is above the CUDA top-k's limit");
    let (vals, idx) = topk(&encode_dense(&xc.xc, w_enc, b_enc, relu)?, k)?;
    Ok(Code { vals, idx: to_dtype(&idx, DType::I32)? })
}

/// The k largest of relu(xc W_enc[:, cols] + b_enc[cols]) per row, with latent ids (AuxK over
/// the dead latents). 1 <= k <= cols.len(); cols distinct and in 0..n.
pub fn encode_topk_cols(xc: &Centered, w_enc: &Tensor, w_enc16: Option<&Tensor>, b_enc: &Tensor, cols: &[i32], k: usize) -> Result<Code> {
    let _p = crate::profile::op("sae_encode_topk_cols");
    const OP: &str = "sae_encode_topk_cols";
    let n = check_encoder(OP, &xc.xc, w_enc, b_enc)?;
    ensure_op!(k >= 1 && k <= cols.len(), OP, "k = {k} must be in 1..={} (the columns asked for) for W_enc {}", cols.len(), w_enc.shape());
    ensure_op!(cols.iter().all(|&c| c >= 0 && (c as usize) < n), OP, "a column is outside 0..{n} of W_enc {}", w_enc.shape());
    let dev = xc.xc.device();
    let cols_t = Tensor::from_slice(cols, [cols.len()], &dev)?;
    let (w_sub, w16_sub, b_sub) = match &dev {
        Device::Cpu => (crate::cpu::sae::gather_cols(w_enc, cols)?, None, crate::cpu::sae::gather_cols(&b_enc.reshape([1, n])?, cols)?),
        Device::Cuda(d) => (
            cuda::sae::gather_cols(d, w_enc, &cols_t)?,
            w_enc16.map(|w| cuda::sae::gather_cols(d, w, &cols_t)).transpose()?,
            cuda::sae::gather_cols(d, &b_enc.reshape([1, n])?, &cols_t)?,
        ),
    };
    let b_sub = b_sub.reshape([cols.len()])?;
    let local = encode_topk(xc, &w_sub, w16_sub.as_ref(), &b_sub, k, true)?;
    // Latent ids: cols[local id], a row gather from the column list.
    let table = cols_t.reshape([cols.len(), 1])?;
    let flat = to_dtype(&local.idx.reshape([local.idx.numel()])?, DType::I64)?;
    let idx = gather_rows(&table, &flat)?.reshape(local.idx.dims().to_vec())?;
    Ok(Code { vals: local.vals, idx })
}

/// target: f32 [B, d], bias: f32 [d] or none, code over W_dec: f32 [n, d] -> the residual
/// target - (sum_e vals W_dec[idx] + bias), its dots with the code's rows and squared sums.
pub fn decode(target: &Tensor, bias: Option<&Tensor>, code: &Code, w_dec: &Tensor) -> Result<Decoded> {
    let _p = crate::profile::op("sae_decode");
    const OP: &str = "sae_decode";
    let mut all = vec![target, w_dec, &code.vals, &code.idx];
    all.extend(bias);
    check_same_device(OP, &all)?;
    check_f32(OP, "target", target)?;
    check_f32(OP, "W_dec", w_dec)?;
    let (rows, d) = target.dims2(OP)?;
    let (n, dw) = w_dec.dims2(OP)?;
    ensure_op!(dw == d, OP, "W_dec {} gives d = {dw}, target {} has d = {d}", w_dec.shape(), target.shape());
    if let Some(b) = bias {
        check_f32(OP, "bias", b)?;
        ensure_op!(b.dims() == [d], OP, "bias {} must be [{d}]", b.shape());
    }
    check_code(OP, code, rows, n)?;
    match target.device() {
        Device::Cpu => crate::cpu::sae::decode(target, bias, code, w_dec),
        Device::Cuda(dev) => cuda::sae::decode(&dev, target, bias, code, w_dec),
    }
}

/// t: f32 [B, d] -> (column sums [d], centred column sums of squares [d]).
pub fn col_stats(t: &Tensor) -> Result<(Tensor, Tensor)> {
    let _p = crate::profile::op("sae_colstats");
    check_f32("sae_colstats", "t", t)?;
    t.dims2("sae_colstats")?;
    match t.device() {
        Device::Cpu => crate::cpu::sae::col_stats(t),
        Device::Cuda(dev) => cuda::sae::col_stats(&dev, t),
    }
}

/// The gradients of the loss whose gradient with respect to x_hat is -c * resid (plus AuxK's):
/// see `SparseBackward`. Every gradient is returned fresh (`=`).
pub fn sparse_backward(a: &SparseBackward) -> Result<Grads> {
    let _p = crate::profile::op("sae_backward");
    const OP: &str = "sae_backward";
    let mut all = vec![a.xc, a.w_enc, a.w_dec, &a.code.vals, &a.code.idx, a.dot, a.resid, a.resid_sum];
    if let Some(x) = &a.aux {
        all.extend([&x.code.vals, &x.code.idx, x.dot, x.resid, x.resid_sum]);
    }
    check_same_device(OP, &all)?;
    for (name, t) in [("xc", a.xc), ("W_enc", a.w_enc), ("W_dec", a.w_dec), ("dot", a.dot), ("resid", a.resid), ("resid_sum", a.resid_sum)] {
        check_f32(OP, name, t)?;
    }
    let (rows, d) = a.xc.dims2(OP)?;
    let (dw, n) = a.w_enc.dims2(OP)?;
    ensure_op!(dw == d, OP, "W_enc {} takes d = {dw}, xc {} has d = {d}", a.w_enc.shape(), a.xc.shape());
    ensure_op!(a.w_dec.dims() == [n, d], OP, "W_dec {} must be [{n}, {d}] for W_enc {}", a.w_dec.shape(), a.w_enc.shape());
    let k = check_code(OP, a.code, rows, n)?;
    ensure_op!(a.dot.dims() == [rows, k], OP, "dot {} must be [{rows}, {k}]", a.dot.shape());
    ensure_op!(a.resid.dims() == [rows, d], OP, "resid {} must be [{rows}, {d}]", a.resid.shape());
    ensure_op!(a.resid_sum.dims() == [d], OP, "resid_sum {} must be [{d}]", a.resid_sum.shape());
    if let Some(x) = &a.aux {
        let ka = check_code(OP, x.code, rows, n)?;
        ensure_op!(x.dot.dims() == [rows, ka], OP, "aux dot {} must be [{rows}, {ka}]", x.dot.shape());
        ensure_op!(x.resid.dims() == [rows, d], OP, "aux resid {} must be [{rows}, {d}]", x.resid.shape());
        ensure_op!(x.resid_sum.dims() == [d], OP, "aux resid_sum {} must be [{d}]", x.resid_sum.shape());
    }
    match a.xc.device() {
        Device::Cpu => crate::cpu::sae::sparse_backward(a),
        Device::Cuda(dev) => cuda::sae::sparse_backward(&dev, a),
    }
}

/// One Adam step (torch.optim.Adam, no weight decay) over the four parameters in place, with
/// moments shaped like them (f32, or bf16 for half the optimizer traffic), then W_dec's rows
/// divided by their norms. On CUDA one launch; `w_enc16` (W_enc's bf16 shadow) is refreshed in
/// the same pass.
pub fn adam_step(t: AdamSlots, w_enc16: Option<&mut Tensor>, s: &AdamScalars) -> Result<()> {
    let _p = crate::profile::op("sae_adam");
    const OP: &str = "sae_adam";
    let mdt = t.w_enc.m.dtype();
    ensure_op!(matches!(mdt, DType::F32 | DType::BF16), OP, "moments must be f32 or bf16, got {mdt}");
    let named = [("W_enc", &t.w_enc), ("b_enc", &t.b_enc), ("b_dec", &t.b_dec), ("W_dec", &t.w_dec)];
    let mut all = Vec::new();
    for (name, slot) in named {
        let (pp, gg) = (&*slot.p, slot.g);
        check_f32(OP, name, pp)?;
        check_f32(OP, "gradient", gg)?;
        ensure_op!(gg.shape() == pp.shape(), OP, "gradient {} of {name} {} differs in shape", gg.shape(), pp.shape());
        for mv in [&*slot.m, &*slot.v] {
            ensure_op!(mv.shape() == pp.shape() && mv.dtype() == mdt, OP, "moment {} ({}) of {name} {} must match it in shape, {mdt}", mv.shape(), mv.dtype(), pp.shape());
        }
        all.extend([pp, gg, &*slot.m, &*slot.v]);
    }
    check_same_device(OP, &all)?;
    let (d, n) = t.w_enc.p.dims2(OP)?;
    ensure_op!(t.w_dec.p.dims() == [n, d], OP, "W_dec {} must be [{n}, {d}] for W_enc {}", t.w_dec.p.shape(), t.w_enc.p.shape());
    match t.w_enc.p.device() {
        Device::Cpu => crate::cpu::sae::adam_step(t, s),
        Device::Cuda(dev) => {
            if let Some(w16) = &w_enc16 {
                ensure_op!(w16.dims() == t.w_enc.p.dims() && w16.dtype() == DType::BF16, OP, "W_enc16 {} must be bf16 like W_enc {}", w16.shape(), t.w_enc.p.shape());
            }
            cuda::sae::adam_step(&dev, t, w_enc16, s)
        }
    }
}

/// Divides each row of w: f32 [n, d] by its L2 norm, in place (rows of norm 0 stay): the unit
/// decoder directions the Adam step keeps, for a W_dec set outside it (inits, tests). Computed
/// on the host (a CUDA tensor makes the round trip): it runs once per init, never per step.
pub fn normalize_rows(w: &mut Tensor) -> Result<()> {
    let _p = crate::profile::op("sae_normalize_rows");
    const OP: &str = "sae_normalize_rows";
    check_f32(OP, "w", w)?;
    w.dims2(OP)?;
    match w.device() {
        Device::Cpu => crate::cpu::sae::normalize_rows(w),
        device => {
            let mut host = w.to_device(&Device::Cpu)?;
            crate::cpu::sae::normalize_rows(&mut host)?;
            *w = host.to_device(&device)?;
            Ok(())
        }
    }
}

/// since: i64 [n], samples since each latent last had a nonzero value in a code: 0 for the
/// latents in `code` with a nonzero value, + B for the others.
pub fn update_since(since: &mut Tensor, code: &Code) -> Result<()> {
    let _p = crate::profile::op("sae_since");
    const OP: &str = "sae_since";
    check_same_device(OP, &[since, &code.vals, &code.idx])?;
    ensure_op!(since.dtype() == DType::I64, OP, "since {} must be i64, got {}", since.shape(), since.dtype());
    let n = since.dims1(OP)?;
    let rows = code.vals.dims().first().copied().unwrap_or(0);
    check_code(OP, code, rows, n)?;
    match since.device() {
        Device::Cpu => crate::cpu::sae::update_since(since, code),
        Device::Cuda(dev) => cuda::sae::update_since(&dev, since, code),
    }
}
