//! Launchers for kernels/sae.cu: the TopK SAE's training step on the GPU, in the order it runs
//! (forward, backward, optimiser). The checks live in `ops::sae`; these functions trust them
//! (shapes, dtypes, one device) and compute launch shapes.
//!
//! Legend: B = rows, d = input dim, n = latents, k / kk = entries per row of a code.

use super::elementwise::empty;
use super::kernels::{Kernel, Module, F32_ONLY};
use super::launch::{cfg_1d, cfg_blocks, to_i32, DeviceRepr, LaunchConfig, PushKernelArg};
use super::CudaDevice;
use crate::plan::optim::AdamScalars;
use crate::plan::sae::{AdamSlots, Code, Decoded, Grads, SparseBackward};
use crate::tensor::{DType, Device, Tensor};
use crate::{Error, Result};
use std::sync::Arc;

const M: Module = Module::Sae;
const BF16_ONLY: &[DType] = &[DType::BF16];
const F32_BF16: &[DType] = &[DType::F32, DType::BF16];
const NONE: &[DType] = &[];

pub const CENTER: Kernel = Kernel::new(M, "sae_center", F32_ONLY);
pub const ENCODE_TOPK_K32: Kernel = Kernel::new(M, "sae_encode_topk_k32", BF16_ONLY);
pub const ENCODE_TOPK_K64: Kernel = Kernel::new(M, "sae_encode_topk_k64", BF16_ONLY);
pub const TOPK_MERGE: Kernel = Kernel::new(M, "sae_topk_merge", NONE);
pub const DECODE: Kernel = Kernel::new(M, "sae_decode", F32_ONLY);
pub const COLSTATS_PARTIAL: Kernel = Kernel::new(M, "sae_colstats_partial", NONE);
pub const COLSTATS_FINAL: Kernel = Kernel::new(M, "sae_colstats_final", NONE);
pub const CSC_COUNT: Kernel = Kernel::new(M, "sae_csc_count", NONE);
pub const CSC_SCAN: Kernel = Kernel::new(M, "sae_csc_scan", NONE);
pub const CSC_FILL: Kernel = Kernel::new(M, "sae_csc_fill", NONE);
pub const CSC_SORT: Kernel = Kernel::new(M, "sae_csc_sort", NONE);
pub const GRAD_ENC: Kernel = Kernel::new(M, "sae_grad_enc", F32_ONLY);
pub const GRAD_DEC: Kernel = Kernel::new(M, "sae_grad_dec", F32_ONLY);
pub const GRAD_BDEC: Kernel = Kernel::new(M, "sae_grad_bdec", F32_ONLY);
/// The dtype names the moments' storage (f32 or bf16); parameters are f32 either way.
pub const ADAM: Kernel = Kernel::new(M, "sae_adam", F32_BF16);
pub const FIRED_MARK: Kernel = Kernel::new(M, "sae_fired_mark", NONE);
pub const SINCE_UPDATE: Kernel = Kernel::new(M, "sae_since_update", NONE);
pub const GATHER_COLS: Kernel = Kernel::new(M, "sae_gather_cols", F32_BF16);

pub const KERNELS: &[Kernel] = &[
    CENTER,
    ENCODE_TOPK_K32,
    ENCODE_TOPK_K64,
    TOPK_MERGE,
    DECODE,
    COLSTATS_PARTIAL,
    COLSTATS_FINAL,
    CSC_COUNT,
    CSC_SCAN,
    CSC_FILL,
    CSC_SORT,
    GRAD_ENC,
    GRAD_DEC,
    GRAD_BDEC,
    ADAM,
    FIRED_MARK,
    SINCE_UPDATE,
    GATHER_COLS,
];

/// The largest k the fused encoder keeps on chip (its candidate lists hold k rounded up to 32,
/// plus 32).
pub const FUSED_MAX_K: usize = 64;
/// Encoder tile (rows x columns) and the shared memory outside the candidate lists.
const ENC_TILE: usize = 128;
const ENC_AB_BYTES: usize = 37_888;
/// Row chunk of the column statistics (fixed, so results do not depend on the device).
const COLSTATS_CHUNK: usize = 256;

fn null() -> u64 {
    0
}

fn aligned16(t: &Tensor) -> Result<bool> {
    Ok(t.cuda_ptr()? % 16 == 0)
}

/// xc = x - b_dec in f32 and bf16. x: f32 [B, d], b_dec: f32 [d].
pub fn center(dev: &Arc<CudaDevice>, x: &Tensor, b_dec: &Tensor) -> Result<(Tensor, Tensor)> {
    let _r = super::nvtx::range("sae_center");
    let (rows, d) = x.dims2("sae_center")?;
    let mut xc = empty(dev, [rows, d], DType::F32)?;
    let mut xc16 = empty(dev, [rows, d], DType::BF16)?;
    let total = (rows * d) as i64;
    if total == 0 {
        return Ok((xc, xc16));
    }
    let f = dev.function(&CENTER, DType::F32)?;
    let d32 = to_i32(d, "d")?;
    let (xp, bp, cp, hp) = (x.cuda_ptr()?, b_dec.cuda_ptr()?, xc.cuda_ptr_mut()?, xc16.cuda_ptr_mut()?);
    // SAFETY: x, xc (f32) and xc16 (bf16) hold rows*d elements, b_dec d; xc and xc16 are fresh.
    unsafe {
        dev.stream().launch_builder(&f).arg(&xp).arg(&bp).arg(&cp).arg(&hp).arg(&total).arg(&d32).launch(cfg_1d(total as usize, 256))
    }?;
    Ok((xc, xc16))
}

/// How the fused encoder splits the columns: (splits, tiles per split). Aims at about eight
/// blocks per SM (one block fits an SM at a time, so the last of ~8 waves wastes little),
/// with every split but the last a full run of tiles. The result does not depend on it.
pub fn encoder_splits(rows: usize, n: usize, sms: usize) -> (usize, usize) {
    let rblocks = rows.div_ceil(ENC_TILE).max(1);
    let ntiles = n.div_ceil(ENC_TILE).max(1);
    let want = (8 * sms.max(1)).div_ceil(rblocks).clamp(1, ntiles);
    let per = ntiles.div_ceil(want);
    (ntiles.div_ceil(per), per)
}

/// Shared memory of the fused encoder for `k` (the k <= 32 instantiation's lists hold 64 keys
/// per row, the k <= 64 one's 96).
pub fn encoder_smem(k: usize) -> usize {
    let cap = if k <= 32 { 64 } else { 96 };
    ENC_AB_BYTES + ENC_TILE * 8 + ENC_TILE * 4 + ENC_TILE * cap * 8
}

/// The k largest of relu?(xc16 W16 + b_enc) per row: vals f32 [B, k] (descending), idx i32
/// [B, k]. xc16: bf16 [B, d], w16: bf16 [d, n], b_enc: f32 [n]; 1 <= k <= min(64, n).
pub fn encode_topk(dev: &Arc<CudaDevice>, xc16: &Tensor, w16: &Tensor, b_enc: &Tensor, k: usize, relu: bool) -> Result<Code> {
    let _r = super::nvtx::range("sae_encode_topk");
    let (rows, d) = xc16.dims2("sae_encode_topk")?;
    let n = w16.dims()[1];
    let mut vals = empty(dev, [rows, k], DType::F32)?;
    let mut idx = empty(dev, [rows, k], DType::I32)?;
    if rows == 0 {
        return Ok(Code { vals, idx });
    }
    let (splits, per) = encoder_splits(rows, n, dev.info().multiprocessors);
    let smem = encoder_smem(k);
    let kernel = if k <= 32 { &ENCODE_TOPK_K32 } else { &ENCODE_TOPK_K64 };
    let mut cand = empty(dev, [rows, splits, k], DType::I64)?;
    let f = dev.function_with_smem(kernel, DType::BF16, smem)?;
    let (m32, d32, n32) = (to_i32(rows, "rows")?, to_i32(d, "d")?, to_i32(n, "n")?);
    let (k32, relu32) = (k as i32, i32::from(relu));
    let (per32, splits32) = (per as i32, splits as i32);
    let a_vec = i32::from(d.is_multiple_of(8) && aligned16(xc16)?);
    let b_vec = i32::from(n.is_multiple_of(8) && aligned16(w16)?);
    let (xp, wp, bp, cp) = (xc16.cuda_ptr()?, w16.cuda_ptr()?, b_enc.cuda_ptr()?, cand.cuda_ptr_mut()?);
    let blocks = rows.div_ceil(ENC_TILE) * splits;
    // SAFETY: xc16 holds rows*d bf16, w16 d*n bf16, b_enc n f32; cand is fresh with
    // rows*splits*k u64; the 16-byte paths are taken only when the rows are multiples of 8
    // elements and the bases 16-byte aligned; the instantiation's list capacity holds k + 32
    // and smem matches its layout.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&xp)
            .arg(&wp)
            .arg(&bp)
            .arg(&cp)
            .arg(&m32)
            .arg(&d32)
            .arg(&n32)
            .arg(&k32)
            .arg(&relu32)
            .arg(&per32)
            .arg(&splits32)
            .arg(&a_vec)
            .arg(&b_vec)
            .launch(cfg_blocks(blocks, 256, smem)?)
    }?;
    let f = dev.function(&TOPK_MERGE, DType::F32)?;
    let (cp, vp, ip) = (cand.cuda_ptr()?, vals.cuda_ptr_mut()?, idx.cuda_ptr_mut()?);
    // SAFETY: cand holds rows*splits*k keys written above; vals and idx are fresh with rows*k.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&cp)
            .arg(&vp)
            .arg(&ip)
            .arg(&m32)
            .arg(&splits32)
            .arg(&k32)
            .launch(cfg_blocks(rows.div_ceil(4), 128, 0)?)
    }?;
    Ok(Code { vals, idx })
}

/// dst [r, cols.len()] = src [r, c][:, cols]; src f32 or bf16, cols i32 (in range, checked by
/// the caller).
pub fn gather_cols(dev: &Arc<CudaDevice>, src: &Tensor, cols: &Tensor) -> Result<Tensor> {
    let _r = super::nvtx::range("sae_gather_cols");
    let (r, c) = src.dims2("sae_gather_cols")?;
    let m = cols.dims()[0];
    let mut dst = empty(dev, [r, m], src.dtype())?;
    let total = r * m;
    if total == 0 {
        return Ok(dst);
    }
    let f = dev.function(&GATHER_COLS, src.dtype())?;
    let (r32, c32, m32) = (to_i32(r, "rows")?, to_i32(c, "columns")?, to_i32(m, "columns")?);
    let (sp, ip, dp) = (src.cuda_ptr()?, cols.cuda_ptr()?, dst.cuda_ptr_mut()?);
    // SAFETY: src holds r*c elements of its dtype, cols m i32 in 0..c; dst is fresh with r*m.
    unsafe { dev.stream().launch_builder(&f).arg(&sp).arg(&ip).arg(&dp).arg(&r32).arg(&c32).arg(&m32).launch(cfg_1d(total, 256)) }?;
    Ok(dst)
}

/// Residual, squared error and dots of one decode (see kernels/sae.cu `sae_decode`):
/// target f32 [B, d], bias f32 [d] or none, code vals f32 [B, kk] and idx i32 [B, kk],
/// w_dec f32 [n, d] -> resid [B, d], dot [B, kk], sse [B].
pub fn decode(dev: &Arc<CudaDevice>, target: &Tensor, bias: Option<&Tensor>, code: &Code, w_dec: &Tensor) -> Result<Decoded> {
    let Code { vals, idx } = code;
    let _r = super::nvtx::range("sae_decode");
    let (rows, d) = target.dims2("sae_decode")?;
    let kk = vals.dims()[1];
    let mut resid = empty(dev, [rows, d], DType::F32)?;
    let mut dot = empty(dev, [rows, kk], DType::F32)?;
    let mut sse = empty(dev, [rows], DType::F32)?;
    if rows == 0 {
        return Ok(Decoded { resid, dot, sse });
    }
    let f = dev.function_with_smem(&DECODE, DType::F32, 8 * kk)?;
    let (d32, kk32) = (to_i32(d, "d")?, to_i32(kk, "k")?);
    let bp = match bias {
        Some(b) => b.cuda_ptr()?,
        None => null(),
    };
    let (tp, vp, ip, wp) = (target.cuda_ptr()?, vals.cuda_ptr()?, idx.cuda_ptr()?, w_dec.cuda_ptr()?);
    let (rp, dp, sp) = (resid.cuda_ptr_mut()?, dot.cuda_ptr_mut()?, sse.cuda_ptr_mut()?);
    // SAFETY: target holds rows*d f32, bias d f32 (or null), vals/idx rows*kk, idx in 0..n
    // rows of w_dec (n*d f32); resid, dot and sse are fresh; smem 8*kk bytes as the kernel
    // expects.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&tp)
            .arg(&bp)
            .arg(&vp)
            .arg(&ip)
            .arg(&wp)
            .arg(&rp)
            .arg(&dp)
            .arg(&sp)
            .arg(&d32)
            .arg(&kk32)
            .launch(cfg_blocks(rows, 256, 8 * kk)?)
    }?;
    Ok(Decoded { resid, dot, sse })
}

/// Column sums and centred sums of squares of t f32 [rows, d]: (sum [d], m2 [d]).
pub fn col_stats(dev: &Arc<CudaDevice>, t: &Tensor) -> Result<(Tensor, Tensor)> {
    let _r = super::nvtx::range("sae_colstats");
    let (rows, d) = t.dims2("sae_colstats")?;
    let mut sum = empty(dev, [d], DType::F32)?;
    let mut m2 = empty(dev, [d], DType::F32)?;
    if d == 0 {
        return Ok((sum, m2));
    }
    let chunks = rows.div_ceil(COLSTATS_CHUNK).max(1);
    if chunks > 65_535 {
        return Err(Error::Cuda(format!("sae_colstats: {rows} rows exceed the kernel's {} chunks", 65_535)));
    }
    let mut part = empty(dev, [chunks, 3, d], DType::F32)?;
    let (rows32, d32, chunk32, chunks32) = (to_i32(rows, "rows")?, to_i32(d, "d")?, COLSTATS_CHUNK as i32, chunks as i32);
    let f = dev.function(&COLSTATS_PARTIAL, DType::F32)?;
    let (tp, pp) = (t.cuda_ptr()?, part.cuda_ptr_mut()?);
    let cfg = LaunchConfig { grid_dim: (d.div_ceil(32) as u32, chunks as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: t holds rows*d f32; part is fresh with chunks*3*d f32; every (chunk, column)
    // partial is written by exactly one thread.
    unsafe { dev.stream().launch_builder(&f).arg(&tp).arg(&pp).arg(&rows32).arg(&d32).arg(&chunk32).launch(cfg) }?;
    let f = dev.function(&COLSTATS_FINAL, DType::F32)?;
    let (pp, sp, mp) = (part.cuda_ptr()?, sum.cuda_ptr_mut()?, m2.cuda_ptr_mut()?);
    // SAFETY: part was written above; sum and m2 are fresh with d f32.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&pp)
            .arg(&sp)
            .arg(&mp)
            .arg(&rows32)
            .arg(&d32)
            .arg(&chunk32)
            .arg(&chunks32)
            .launch(cfg_1d(d, 256))
    }?;
    Ok((sum, m2))
}

/// The sparse backward (see kernels/sae.cu and `plan::sae::SparseBackward`): gradients of W_enc
/// [d, n], b_enc [n], W_dec [n, d] (with the component along each row removed) and b_dec [d].
pub fn sparse_backward(dev: &Arc<CudaDevice>, a: &SparseBackward) -> Result<Grads> {
    let _r = super::nvtx::range("sae_backward");
    let (rows, d) = a.xc.dims2("sae_backward")?;
    let n = a.w_enc.dims()[1];
    let k = a.code.vals.dims()[1];
    let cuda = Device::Cuda(dev.clone());
    let n_main = rows * k;
    let (ka, c_aux) = match &a.aux {
        Some(x) => (x.code.vals.dims()[1], x.c),
        None => (0, 0.0),
    };
    let n_aux = rows * ka;
    let ne = n_main + n_aux;
    let (nm32, na32) = (to_i32(n_main, "B*k")?, to_i32(n_aux, "B*aux_k")?);
    to_i32(ne, "code entries")?;
    let (b32, d32, n32, k32) = (to_i32(rows, "rows")?, to_i32(d, "d")?, to_i32(n, "n")?, to_i32(k, "k")?);
    let ka32 = ka.max(1) as i32;
    let relu32 = i32::from(a.relu);
    let (ia, va, da) = match &a.aux {
        Some(x) => (x.code.idx.cuda_ptr()?, x.code.vals.cuda_ptr()?, x.dot.cuda_ptr()?),
        None => (null(), null(), null()),
    };
    let (im, vm, dm) = (a.code.idx.cuda_ptr()?, a.code.vals.cuda_ptr()?, a.dot.cuda_ptr()?);

    // Latent-major lists of the entries.
    let mut counts = Tensor::zeros([n], DType::I32, &cuda)?;
    let mut fill = Tensor::zeros([n], DType::I32, &cuda)?;
    let mut ptr = empty(dev, [n + 1], DType::I32)?;
    let mut unsorted = empty(dev, [ne.max(1)], DType::I32)?;
    let mut ent_row = empty(dev, [ne.max(1)], DType::I32)?;
    let mut ent_dpre = empty(dev, [ne.max(1)], DType::F32)?;
    let mut ent_zc = empty(dev, [ne.max(1)], DType::F32)?;
    if ne > 0 {
        let f = dev.function(&CSC_COUNT, DType::F32)?;
        let cp = counts.cuda_ptr_mut()?;
        // SAFETY: idx arrays hold n_main and n_aux i32 in 0..n; counts holds n zeroed i32.
        unsafe { dev.stream().launch_builder(&f).arg(&im).arg(&nm32).arg(&ia).arg(&na32).arg(&cp).launch(cfg_1d(ne, 256)) }?;
    }
    let f = dev.function(&CSC_SCAN, DType::F32)?;
    let (cp, pp) = (counts.cuda_ptr()?, ptr.cuda_ptr_mut()?);
    // SAFETY: counts holds n i32, ptr n+1; one block of 1024 threads as the kernel assumes.
    unsafe { dev.stream().launch_builder(&f).arg(&cp).arg(&pp).arg(&n32).launch(cfg_blocks(1, 1024, 0)?) }?;
    if ne > 0 {
        let f = dev.function(&CSC_FILL, DType::F32)?;
        let (pp, fp, up) = (ptr.cuda_ptr()?, fill.cuda_ptr_mut()?, unsorted.cuda_ptr_mut()?);
        // SAFETY: ptr holds the prefix sums of the counts, so every claimed slot is below ne.
        unsafe {
            dev.stream().launch_builder(&f).arg(&im).arg(&nm32).arg(&ia).arg(&na32).arg(&pp).arg(&fp).arg(&up).launch(cfg_1d(ne, 256))
        }?;
        let f = dev.function(&CSC_SORT, DType::F32)?;
        let (up, rp, dpp, zp) = (unsorted.cuda_ptr()?, ent_row.cuda_ptr_mut()?, ent_dpre.cuda_ptr_mut()?, ent_zc.cuda_ptr_mut()?);
        // SAFETY: every array holds its code's entries; the ranks within a latent's slots are
        // a permutation, so each output slot is written once.
        unsafe {
            dev.stream()
                .launch_builder(&f)
                .arg(&im)
                .arg(&vm)
                .arg(&dm)
                .arg(&nm32)
                .arg(&k32)
                .arg(&ia)
                .arg(&va)
                .arg(&da)
                .arg(&na32)
                .arg(&ka32)
                .arg(&b32)
                .arg(&a.c)
                .arg(&c_aux)
                .arg(&relu32)
                .arg(&pp)
                .arg(&up)
                .arg(&rp)
                .arg(&dpp)
                .arg(&zp)
                .launch(cfg_1d(ne, 256))
        }?;
    }

    // dW_enc, db_enc.
    let mut dw_enc = empty(dev, [d, n], DType::F32)?;
    let mut db_enc = empty(dev, [n], DType::F32)?;
    let gy = d.div_ceil(8);
    if gy > 65_535 {
        return Err(Error::Cuda(format!("sae_grad_enc: d = {d} exceeds the kernel's grid ({} rows of 8)", 65_535)));
    }
    let f = dev.function(&GRAD_ENC, DType::F32)?;
    let (xp, pp, rp, dpp) = (a.xc.cuda_ptr()?, ptr.cuda_ptr()?, ent_row.cuda_ptr()?, ent_dpre.cuda_ptr()?);
    let (wp, bp) = (dw_enc.cuda_ptr_mut()?, db_enc.cuda_ptr_mut()?);
    let cfg = LaunchConfig { grid_dim: (n.div_ceil(256) as u32, gy as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: xc holds rows*d f32; the lists index rows < 2*rows (mod rows for xc); every
    // (i, j) of dw_enc and every j of db_enc is written by exactly one thread.
    unsafe { dev.stream().launch_builder(&f).arg(&xp).arg(&pp).arg(&rp).arg(&dpp).arg(&wp).arg(&bp).arg(&b32).arg(&d32).arg(&n32).launch(cfg) }?;

    // dW_dec.
    let mut dw_dec = empty(dev, [n, d], DType::F32)?;
    let f = dev.function_with_smem(&GRAD_DEC, DType::F32, 4 * d)?;
    let raux = match &a.aux {
        Some(x) => x.resid.cuda_ptr()?,
        None => null(),
    };
    let (rsp, wdp, zp, gp) = (a.resid.cuda_ptr()?, a.w_dec.cuda_ptr()?, ent_zc.cuda_ptr()?, dw_dec.cuda_ptr_mut()?);
    // SAFETY: resid (and resid_aux when AuxK entries exist) hold rows*d f32, w_dec n*d; each
    // block writes its own row of dw_dec; smem 4*d bytes as the kernel expects.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&rsp)
            .arg(&raux)
            .arg(&wdp)
            .arg(&pp)
            .arg(&rp)
            .arg(&zp)
            .arg(&gp)
            .arg(&b32)
            .arg(&d32)
            .launch(cfg_blocks(n, 128, 4 * d)?)
    }?;

    // db_dec.
    let mut db_dec = empty(dev, [d], DType::F32)?;
    let f = dev.function(&GRAD_BDEC, DType::F32)?;
    let rsum_aux = match &a.aux {
        Some(x) => x.resid_sum.cuda_ptr()?,
        None => null(),
    };
    let (wep, dbe, rsum, out) = (a.w_enc.cuda_ptr()?, db_enc.cuda_ptr()?, a.resid_sum.cuda_ptr()?, db_dec.cuda_ptr_mut()?);
    // SAFETY: w_enc holds d*n f32, db_enc n, the sums d (rsum_aux may be null); one block per i.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&wep)
            .arg(&dbe)
            .arg(&rsum)
            .arg(&rsum_aux)
            .arg(&a.c)
            .arg(&c_aux)
            .arg(&out)
            .arg(&n32)
            .launch(cfg_blocks(d, 256, 0)?)
    }?;
    Ok(Grads { w_enc: dw_enc, b_enc: db_enc, w_dec: dw_dec, b_dec: db_dec })
}

/// The scalars of one Adam step as the kernel takes them (mirrors `struct AdamArgs`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct AdamArgs {
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    step_size: f32,
    bc2_sqrt: f32,
    eps: f32,
}

// SAFETY: a plain `repr(C)` struct of f32s, laid out as the C struct in kernels/sae.cu.
unsafe impl DeviceRepr for AdamArgs {}

/// One Adam step over [W_enc, b_enc, b_dec, W_dec] in one launch (moments of dtype `mdt`),
/// writing W_enc's bf16 shadow when given and renormalising W_dec's rows.
pub fn adam_step(dev: &Arc<CudaDevice>, t: AdamSlots, w16: Option<&mut Tensor>, s: &AdamScalars) -> Result<()> {
    let _r = super::nvtx::range("sae_adam");
    let AdamSlots { w_enc, b_enc, b_dec, w_dec } = t;
    let (d, n) = w_enc.p.dims2("sae_adam")?;
    let mdt = w_enc.m.dtype();
    let elems = d * n + n + d;
    let elem_blocks = elems.div_ceil(256);
    let f = dev.function_with_smem(&ADAM, mdt, 4 * d)?;
    let args = AdamArgs {
        beta1: s.beta1,
        one_minus_beta1: s.one_minus_beta1,
        beta2: s.beta2,
        one_minus_beta2: s.one_minus_beta2,
        step_size: s.step_size,
        bc2_sqrt: s.bc2_sqrt,
        eps: s.eps,
    };
    let (d32, n32, eb) = (to_i32(d, "d")?, to_i32(n, "n")?, elem_blocks as i64);
    let hp = match w16 {
        Some(t) => t.cuda_ptr_mut()?,
        None => null(),
    };
    let (p0, g0, m0, v0) = (w_enc.p.cuda_ptr_mut()?, w_enc.g.cuda_ptr()?, w_enc.m.cuda_ptr_mut()?, w_enc.v.cuda_ptr_mut()?);
    let (p1, g1, m1, v1) = (b_enc.p.cuda_ptr_mut()?, b_enc.g.cuda_ptr()?, b_enc.m.cuda_ptr_mut()?, b_enc.v.cuda_ptr_mut()?);
    let (p2, g2, m2, v2) = (b_dec.p.cuda_ptr_mut()?, b_dec.g.cuda_ptr()?, b_dec.m.cuda_ptr_mut()?, b_dec.v.cuda_ptr_mut()?);
    let (p3, g3, m3, v3) = (w_dec.p.cuda_ptr_mut()?, w_dec.g.cuda_ptr()?, w_dec.m.cuda_ptr_mut()?, w_dec.v.cuda_ptr_mut()?);
    // SAFETY: every parameter, gradient and moment holds its tensor's elements (f32 params and
    // grads, moments of `mdt`, checked in ops::sae); params, moments and the shadow are unique
    // storage (cuda_ptr_mut copies shared storage first); each element is updated by one
    // thread, each W_dec row by one block; smem 4*d bytes as the kernel expects.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&p0)
            .arg(&g0)
            .arg(&m0)
            .arg(&v0)
            .arg(&hp)
            .arg(&p1)
            .arg(&g1)
            .arg(&m1)
            .arg(&v1)
            .arg(&p2)
            .arg(&g2)
            .arg(&m2)
            .arg(&v2)
            .arg(&p3)
            .arg(&g3)
            .arg(&m3)
            .arg(&v3)
            .arg(&d32)
            .arg(&n32)
            .arg(&eb)
            .arg(&args)
            .launch(cfg_blocks(elem_blocks + n, 256, 4 * d)?)
    }?;
    Ok(())
}

/// since[j] = 0 for every latent with a nonzero value in the code, else since[j] + rows.
/// since: i64 [n], code vals f32 [B, kk], idx i32 [B, kk].
pub fn update_since(dev: &Arc<CudaDevice>, since: &mut Tensor, code: &Code) -> Result<()> {
    let Code { vals, idx } = code;
    let _r = super::nvtx::range("sae_since");
    let n = since.numel();
    let ne = vals.numel();
    let rows = vals.dims()[0] as i64;
    let fired = dev.alloc_zeroed(n.max(1))?;
    let (n32, ne32) = (to_i32(n, "n")?, to_i32(ne, "code entries")?);
    let fp = fired.ptr();
    if ne > 0 {
        let f = dev.function(&FIRED_MARK, DType::F32)?;
        let (vp, ip) = (vals.cuda_ptr()?, idx.cuda_ptr()?);
        // SAFETY: vals/idx hold ne entries with idx in 0..n; fired holds n zeroed bytes.
        unsafe { dev.stream().launch_builder(&f).arg(&vp).arg(&ip).arg(&ne32).arg(&fp).launch(cfg_1d(ne, 256)) }?;
    }
    if n > 0 {
        let f = dev.function(&SINCE_UPDATE, DType::F32)?;
        let sp = since.cuda_ptr_mut()?;
        // SAFETY: since holds n i64 (unique storage), fired n bytes; one thread per latent.
        unsafe { dev.stream().launch_builder(&f).arg(&sp).arg(&fp).arg(&n32).arg(&rows).launch(cfg_1d(n, 256)) }?;
    }
    // `fired` goes back to the pool when dropped; later work on this stream runs after the
    // kernels above, so reusing it is ordered.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_every_tile_once() {
        for (rows, n, sms) in [(8192, 81_920, 132), (8192, 20_480, 132), (1, 16, 108), (300, 1000, 132), (130, 257, 1)] {
            let (splits, per) = encoder_splits(rows, n, sms);
            let ntiles = n.div_ceil(128);
            assert!(splits >= 1 && (splits - 1) * per < ntiles && splits * per >= ntiles, "{rows} {n} {sms}: {splits} x {per}");
        }
        assert_eq!(encoder_splits(8192, 81_920, 132), (17, 38));
        assert_eq!((encoder_smem(32), encoder_smem(64)), (104_960, 137_728));
    }
}
