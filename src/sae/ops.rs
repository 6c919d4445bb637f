//! The SAE op family: each op checks its operands once (shapes, dtypes, one device) and runs the
//! CPU reference (`sae::cpu`) or the CUDA kernels (`cuda::sae`, kernels/sae.cu), which trust
//! the checks. The model, loss, backward and trainer are written in these ops only.
//!
//! Legend: B = rows, d = input dim, n = latents, k / kk = entries per row of a code.
//! Parameters are f32; codes are (vals f32 [B, kk] descending per row, idx i32 [B, kk]).

use super::cpu;
use super::model::SaeParams;
use crate::cuda;
use crate::ops::optim::AdamScalars;
use crate::ops::{check_same_device, topk};
use crate::tensor::{DType, Device, Tensor};
use crate::{ensure_op, Result};

/// A sparse code: per row the kk selected latents.
#[derive(Debug, Clone)]
pub struct Code {
    /// f32 [B, kk], descending within each row (value, then lower latent first).
    pub vals: Tensor,
    /// i32 [B, kk].
    pub idx: Tensor,
}

/// The centred input x - b_dec: f32 [B, d], and on CUDA its bf16 copy (the encoder's operand).
#[derive(Debug, Clone)]
pub struct Centered {
    pub xc: Tensor,
    pub xc16: Option<Tensor>,
}

/// What a sparse decode returns: target - recon [B, d] f32, the dot of that residual with each
/// code entry's decoder row [B, kk], and each row's squared residual [B].
#[derive(Debug, Clone)]
pub struct Decoded {
    pub resid: Tensor,
    pub dot: Tensor,
    pub sse: Tensor,
}

/// Gradients of the four parameters, shaped like them.
#[derive(Debug, Clone)]
pub struct Grads {
    pub w_enc: Tensor,
    pub b_enc: Tensor,
    pub w_dec: Tensor,
    pub b_dec: Tensor,
}

/// AuxK's part of the backward: its code over dead latents, the dots and residual of its
/// decode against the main residual, the residual's column sums, and its gradient scale.
pub struct AuxBackward<'a> {
    pub code: &'a Code,
    pub dot: &'a Tensor,
    pub resid: &'a Tensor,
    pub resid_sum: &'a Tensor,
    pub c: f32,
}

/// Inputs of the sparse backward. With g = dL/dx_hat = -c * resid (c = the loss's gradient
/// scale), each code entry (b, j, z) gives
///   dpre = -c * (resid[b] . W_dec[j]) * (ReLU'(pre) if relu, else 1)
///   dW_dec[j] += -c * z * resid[b],  dW_enc[:, j] += dpre * xc[b],  db_enc[j] += dpre
/// and db_dec = -c * sum_b resid[b] - W_enc db_enc (the decoder bias and the centring); then
/// dW_dec[j] loses its component along W_dec[j]. AuxK entries add the same terms with their
/// own residual and scale (and the decoder-bias term, as openai/sparse_autoencoder does).
pub struct SparseBackward<'a> {
    /// f32 [B, d], the centred input of the forward pass.
    pub xc: &'a Tensor,
    pub w_enc: &'a Tensor,
    pub w_dec: &'a Tensor,
    pub code: &'a Code,
    /// f32 [B, k], from the main decode.
    pub dot: &'a Tensor,
    /// f32 [B, d], x - x_hat.
    pub resid: &'a Tensor,
    /// f32 [d], its column sums.
    pub resid_sum: &'a Tensor,
    pub c: f32,
    pub relu: bool,
    pub aux: Option<AuxBackward<'a>>,
}

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
    const OP: &str = "sae_center";
    check_same_device(OP, &[x, b_dec])?;
    check_f32(OP, "x", x)?;
    check_f32(OP, "b_dec", b_dec)?;
    let (_, d) = x.dims2(OP)?;
    ensure_op!(b_dec.dims() == [d], OP, "b_dec {} must be [{d}] for x {}", b_dec.shape(), x.shape());
    match x.device() {
        Device::Cpu => Ok(Centered { xc: cpu::center(x, b_dec)?, xc16: None }),
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
    check_encoder("sae_encode_dense", xc, w_enc, b_enc)?;
    match xc.device() {
        Device::Cpu => cpu::encode_dense(xc, w_enc, b_enc, relu),
        Device::Cuda(_) => {
            let pre = crate::ops::add(&crate::ops::matmul(xc, w_enc)?, b_enc)?;
            if relu {
                crate::ops::relu(&pre)
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
    const OP: &str = "sae_encode_topk";
    let n = check_encoder(OP, &xc.xc, w_enc, b_enc)?;
    ensure_op!(k >= 1 && k <= n, OP, "k = {k} must be in 1..={n} for W_enc {}", w_enc.shape());
    match xc.xc.device() {
        Device::Cpu => cpu::topk_code(&cpu::encode_dense(&xc.xc, w_enc, b_enc, relu)?, k),
        Device::Cuda(dev) => match (&xc.xc16, w_enc16) {
            (Some(x16), Some(w16)) if k <= cuda::sae::FUSED_MAX_K => {
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
                let (vals, idx) = cuda::sae::encode_topk(&dev, x16, w16, b_enc, k, relu)?;
                Ok(Code { vals, idx })
            }
            _ => {
                ensure_op!(k <= cuda::reduce::TOPK_MAX_K_CUDA, OP, "k = {k} is above the CUDA top-k's limit");
                let (vals, idx) = topk(&encode_dense(&xc.xc, w_enc, b_enc, relu)?, k)?;
                Ok(Code { vals, idx: crate::ops::to_dtype(&idx, DType::I32)? })
            }
        },
    }
}

/// The k largest of relu(xc W_enc[:, cols] + b_enc[cols]) per row, with latent ids (AuxK over
/// the dead latents). 1 <= k <= cols.len(); cols distinct and in 0..n.
pub fn encode_topk_cols(xc: &Centered, w_enc: &Tensor, w_enc16: Option<&Tensor>, b_enc: &Tensor, cols: &[i32], k: usize) -> Result<Code> {
    const OP: &str = "sae_encode_topk_cols";
    let n = check_encoder(OP, &xc.xc, w_enc, b_enc)?;
    ensure_op!(k >= 1 && k <= cols.len(), OP, "k = {k} must be in 1..={} (the columns asked for) for W_enc {}", cols.len(), w_enc.shape());
    ensure_op!(cols.iter().all(|&c| c >= 0 && (c as usize) < n), OP, "a column is outside 0..{n} of W_enc {}", w_enc.shape());
    let dev = xc.xc.device();
    let cols_t = Tensor::from_slice(cols, [cols.len()], &dev)?;
    let (w_sub, w16_sub, b_sub) = match &dev {
        Device::Cpu => (cpu::gather_cols(w_enc, cols)?, None, cpu::gather_cols(&b_enc.reshape([1, n])?, cols)?),
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
    let flat = crate::ops::to_dtype(&local.idx.reshape([local.idx.numel()])?, DType::I64)?;
    let idx = crate::ops::gather_rows(&table, &flat)?.reshape(local.idx.dims().to_vec())?;
    Ok(Code { vals: local.vals, idx })
}

/// target: f32 [B, d], bias: f32 [d] or none, code over W_dec: f32 [n, d] -> the residual
/// target - (sum_e vals W_dec[idx] + bias), its dots with the code's rows and squared sums.
pub fn decode(target: &Tensor, bias: Option<&Tensor>, code: &Code, w_dec: &Tensor) -> Result<Decoded> {
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
    let (resid, dot, sse) = match target.device() {
        Device::Cpu => cpu::decode(target, bias, code, w_dec)?,
        Device::Cuda(dev) => cuda::sae::decode(&dev, target, bias, &code.vals, &code.idx, w_dec)?,
    };
    Ok(Decoded { resid, dot, sse })
}

/// t: f32 [B, d] -> (column sums [d], centred column sums of squares [d]).
pub fn col_stats(t: &Tensor) -> Result<(Tensor, Tensor)> {
    check_f32("sae_colstats", "t", t)?;
    t.dims2("sae_colstats")?;
    match t.device() {
        Device::Cpu => cpu::col_stats(t),
        Device::Cuda(dev) => cuda::sae::col_stats(&dev, t),
    }
}

/// The gradients of the loss whose gradient with respect to x_hat is -c * resid (plus AuxK's):
/// see `SparseBackward`. Every gradient is returned fresh (`=`).
pub fn sparse_backward(a: &SparseBackward) -> Result<Grads> {
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
        Device::Cpu => cpu::sparse_backward(a),
        Device::Cuda(dev) => {
            let aux = a.aux.as_ref().map(|x| {
                (cuda::sae::CodeRefs { vals: &x.code.vals, idx: &x.code.idx, dot: x.dot }, x.resid, x.resid_sum, x.c)
            });
            let args = cuda::sae::SparseBackward {
                xc: a.xc,
                w_enc: a.w_enc,
                w_dec: a.w_dec,
                main: cuda::sae::CodeRefs { vals: &a.code.vals, idx: &a.code.idx, dot: a.dot },
                resid: a.resid,
                resid_sum: a.resid_sum,
                c: a.c,
                relu: a.relu,
                aux,
            };
            let [w_enc, b_enc, w_dec, b_dec] = cuda::sae::sparse_backward(&dev, &args)?;
            Ok(Grads { w_enc, b_enc, w_dec, b_dec })
        }
    }
}

/// One Adam step (torch.optim.Adam, no weight decay) over the four parameters in place, with
/// moments `m`, `v` shaped like them (f32, or bf16 for half the optimizer traffic), then W_dec's
/// rows divided by their norms. On CUDA one launch; `w_enc16` (W_enc's bf16 shadow) is
/// refreshed in the same pass.
pub fn adam_step(p: &mut SaeParams, w_enc16: Option<&mut Tensor>, g: &Grads, m: &mut SaeParams, v: &mut SaeParams, s: &AdamScalars) -> Result<()> {
    const OP: &str = "sae_adam";
    let mdt = m.w_enc.dtype();
    ensure_op!(matches!(mdt, DType::F32 | DType::BF16), OP, "moments must be f32 or bf16, got {mdt}");
    let groups = [
        ("W_enc", &p.w_enc, &g.w_enc, &m.w_enc, &v.w_enc),
        ("b_enc", &p.b_enc, &g.b_enc, &m.b_enc, &v.b_enc),
        ("b_dec", &p.b_dec, &g.b_dec, &m.b_dec, &v.b_dec),
        ("W_dec", &p.w_dec, &g.w_dec, &m.w_dec, &v.w_dec),
    ];
    let mut all = Vec::new();
    for (name, pp, gg, mm, vv) in groups {
        check_f32(OP, name, pp)?;
        check_f32(OP, "gradient", gg)?;
        ensure_op!(gg.shape() == pp.shape(), OP, "gradient {} of {name} {} differs in shape", gg.shape(), pp.shape());
        for t in [mm, vv] {
            ensure_op!(t.shape() == pp.shape() && t.dtype() == mdt, OP, "moment {} ({}) of {name} {} must match it in shape, {mdt}", t.shape(), t.dtype(), pp.shape());
        }
        all.extend([pp, gg, mm, vv]);
    }
    check_same_device(OP, &all)?;
    match p.w_enc.device() {
        Device::Cpu => cpu::adam_step(
            cpu::AdamTensors {
                params: [&mut p.w_enc, &mut p.b_enc, &mut p.b_dec, &mut p.w_dec],
                grads: [&g.w_enc, &g.b_enc, &g.b_dec, &g.w_dec],
                m: [&mut m.w_enc, &mut m.b_enc, &mut m.b_dec, &mut m.w_dec],
                v: [&mut v.w_enc, &mut v.b_enc, &mut v.b_dec, &mut v.w_dec],
            },
            s,
        ),
        Device::Cuda(dev) => {
            if let Some(w16) = &w_enc16 {
                ensure_op!(w16.dims() == p.w_enc.dims() && w16.dtype() == DType::BF16, OP, "W_enc16 {} must be bf16 like W_enc {}", w16.shape(), p.w_enc.shape());
            }
            use cuda::sae::AdamSlot;
            cuda::sae::adam_step(
                &dev,
                AdamSlot { p: &mut p.w_enc, g: &g.w_enc, m: &mut m.w_enc, v: &mut v.w_enc },
                w_enc16,
                AdamSlot { p: &mut p.b_enc, g: &g.b_enc, m: &mut m.b_enc, v: &mut v.b_enc },
                AdamSlot { p: &mut p.b_dec, g: &g.b_dec, m: &mut m.b_dec, v: &mut v.b_dec },
                AdamSlot { p: &mut p.w_dec, g: &g.w_dec, m: &mut m.w_dec, v: &mut v.w_dec },
                s,
            )
        }
    }
}

/// since: i64 [n], samples since each latent last had a nonzero value in a code: 0 for the
/// latents in `code` with a nonzero value, + B for the others.
pub fn update_since(since: &mut Tensor, code: &Code) -> Result<()> {
    const OP: &str = "sae_since";
    check_same_device(OP, &[since, &code.vals, &code.idx])?;
    ensure_op!(since.dtype() == DType::I64, OP, "since {} must be i64, got {}", since.shape(), since.dtype());
    let n = since.dims1(OP)?;
    let rows = code.vals.dims().first().copied().unwrap_or(0);
    check_code(OP, code, rows, n)?;
    match since.device() {
        Device::Cpu => cpu::update_since(since, code),
        Device::Cuda(dev) => cuda::sae::update_since(&dev, since, &code.vals, &code.idx),
    }
}
