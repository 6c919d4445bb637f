//! Launchers for kernels/attention.cu: flash attention on tensor cores for f16/bf16 (one
//! kernel per padded head dim, picked by D) and an exact SIMT kernel for f32.

use super::elementwise::empty;
use super::kernels::{Kernel, Module, F32_ONLY, HALVES};
use super::launch::{to_i32, LaunchConfig, PushKernelArg};
use super::CudaDevice;
use crate::plan::attention::AttentionParams;
use crate::tensor::{DType, Tensor};
use crate::{Error, Result};
use std::sync::Arc;

const M: Module = Module::Attention;
const OP: &str = "attention";

pub const TC_D16: Kernel = Kernel::new(M, "attention_tc_d16", HALVES);
pub const TC_D32: Kernel = Kernel::new(M, "attention_tc_d32", HALVES);
pub const TC_D48: Kernel = Kernel::new(M, "attention_tc_d48", HALVES);
pub const TC_D64: Kernel = Kernel::new(M, "attention_tc_d64", HALVES);
pub const TC_D80: Kernel = Kernel::new(M, "attention_tc_d80", HALVES);
pub const TC_D96: Kernel = Kernel::new(M, "attention_tc_d96", HALVES);
pub const TC_D128: Kernel = Kernel::new(M, "attention_tc_d128", HALVES);
pub const TC_D160: Kernel = Kernel::new(M, "attention_tc_d160", HALVES);
pub const TC_D256: Kernel = Kernel::new(M, "attention_tc_d256", HALVES);
pub const TC_D512: Kernel = Kernel::new(M, "attention_tc_d512", HALVES);
pub const SIMT: Kernel = Kernel::new(M, "attention_simt", F32_ONLY);

pub const KERNELS: &[Kernel] =
    &[TC_D16, TC_D32, TC_D48, TC_D64, TC_D80, TC_D96, TC_D128, TC_D160, TC_D256, TC_D512, SIMT];

/// The tensor-core kernels by padded head dim, smallest first: D runs on the first DP >= D.
const TC_VARIANTS: [(usize, &Kernel); 10] = [
    (16, &TC_D16),
    (32, &TC_D32),
    (48, &TC_D48),
    (64, &TC_D64),
    (80, &TC_D80),
    (96, &TC_D96),
    (128, &TC_D128),
    (160, &TC_D160),
    (256, &TC_D256),
    (512, &TC_D512),
];

/// Tile shape of `attention_tc_d<dp>`; mirrors `TcConfig<DP>` in kernels/attention.cu.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcConfig {
    /// Padded head dim (a multiple of 16).
    pub dp: usize,
    pub warps: usize,
    /// Query rows per block.
    pub bm: usize,
    /// Keys per shared-memory tile.
    pub bn: usize,
    /// Value columns per block (grid.y = H * ceil(D / dv)).
    pub dv: usize,
}

impl TcConfig {
    pub fn new(dp: usize) -> TcConfig {
        let warps = 4;
        let mt = if dp <= 64 { 2 } else { 1 };
        let bn = if dp >= 160 { 32 } else { 64 };
        let dv = if dp >= 256 { 128 } else { dp };
        TcConfig { dp, warps, bm: 16 * mt * warps, bn, dv }
    }

    /// Dynamic shared memory: a Q tile, 2 K tiles and 2 V tiles of 16-bit elements, rows
    /// padded by 8 elements.
    pub fn smem_bytes(&self) -> usize {
        let (ldk, ldv) = (self.dp + 8, self.dv + 8);
        (self.bm * ldk + 2 * self.bn * ldk + 2 * self.bn * ldv) * 2
    }
}

/// The tensor-core kernel and its tiles for head dim `d` (<= 512).
fn tc_variant(d: usize) -> Result<(&'static Kernel, TcConfig)> {
    TC_VARIANTS
        .iter()
        .find(|(dp, _)| *dp >= d)
        .map(|&(dp, k)| (k, TcConfig::new(dp)))
        .ok_or_else(|| Error::op(OP, format!("no tensor-core kernel for head dim {d}")))
}

/// SIMT kernel shape: 128 threads, 32 query rows per block, 32-key tiles, 64 value columns
/// per block.
const SIMT_THREADS: u32 = 128;
const SIMT_BM: usize = 32;
const SIMT_BN: usize = 32;
const SIMT_DV: usize = 64;

/// Dynamic shared memory of `attention_simt_f32` for head dim `d` (mirrors the kernel).
fn simt_smem_bytes(d: usize) -> usize {
    let ldq = d.div_ceil(32) * 32 + 4;
    (2 * SIMT_BM * ldq + SIMT_BN * (SIMT_DV + 4) + SIMT_BM * (SIMT_BN + 4)) * 4
}

fn check_aligned(name: &str, t: &Tensor) -> Result<u64> {
    let ptr = t.cuda_ptr()?;
    if ptr % 16 != 0 {
        return Err(Error::op(
            OP,
            format!(
                "{name} {} must start at a 16-byte aligned address (it is a view at an odd offset; copy it first)",
                t.shape()
            ),
        ));
    }
    Ok(ptr)
}

/// q: [B, Nq, H, D], k, v: [B, Nk, H, D] -> [B, Nq, H, D] (checked in ops::attention).
pub fn attention(dev: &Arc<CudaDevice>, q: &Tensor, k: &Tensor, v: &Tensor, p: &AttentionParams) -> Result<Tensor> {
    let _r = super::nvtx::range("attention");
    let dtype = q.dtype();
    let mut out = empty(dev, [p.batch, p.nq, p.heads, p.head_dim], dtype)?;
    if out.numel() == 0 {
        return Ok(out);
    }
    let (qp, kp, vp) = (check_aligned("q", q)?, check_aligned("k", k)?, check_aligned("v", v)?);
    let op_ = out.cuda_ptr_mut()?;
    let nq = to_i32(p.nq, "attention Nq")?;
    let nk = to_i32(p.nk, "attention Nk")?;
    let h = to_i32(p.heads, "attention H")?;
    let d = to_i32(p.head_dim, "attention D")?;
    let causal = i32::from(p.causal);
    if p.batch > 65535 {
        return Err(Error::op(OP, format!("batch {} is over the kernels' limit of 65535 (grid z)", p.batch)));
    }
    let (f, threads, bm, dv, smem, scale) = match dtype {
        DType::F32 => {
            let smem = simt_smem_bytes(p.head_dim);
            (dev.function_with_smem(&SIMT, dtype, smem)?, SIMT_THREADS, SIMT_BM, SIMT_DV, smem, p.scale)
        }
        DType::F16 | DType::BF16 => {
            let (kernel, c) = tc_variant(p.head_dim)?;
            let smem = c.smem_bytes();
            let f = dev.function_with_smem(kernel, dtype, smem)?;
            (f, 32 * c.warps as u32, c.bm, c.dv, smem, p.scale * std::f32::consts::LOG2_E)
        }
        other => return Err(Error::op(OP, format!("no CUDA attention for {other}"))),
    };
    let grid_y = p.heads * p.head_dim.div_ceil(dv);
    if grid_y > 65535 {
        return Err(Error::op(
            OP,
            format!("{} heads of dim {} is over the kernels' limit (grid y)", p.heads, p.head_dim),
        ));
    }
    let grid_x = u32::try_from(p.nq.div_ceil(bm)).map_err(|_| Error::op(OP, format!("Nq = {} is too large", p.nq)))?;
    let cfg = LaunchConfig {
        grid_dim: (grid_x, grid_y as u32, p.batch as u32),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    // SAFETY: q holds B*Nq*H*D and k, v B*Nk*H*D elements of `dtype` (the kernel's variant),
    // out is fresh with B*Nq*H*D; all four are 16-byte aligned (checked above); D is a multiple
    // of 8 no larger than the kernel's padded head dim (checked in ops and by tc_variant);
    // causal implies Nq == Nk; the grid covers ceil(Nq / bm) row blocks, H * ceil(D / dv)
    // (head, value chunk) pairs and B batch entries, with the kernel's block size
    // and the dynamic shared memory its tile configuration needs.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&qp)
            .arg(&kp)
            .arg(&vp)
            .arg(&op_)
            .arg(&nq)
            .arg(&nk)
            .arg(&h)
            .arg(&d)
            .arg(&scale)
            .arg(&causal)
            .launch(cfg)
    }?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_dims_pick_the_smallest_padded_kernel() {
        for (d, dp) in [(8, 16), (40, 48), (64, 64), (72, 80), (80, 80), (160, 160), (168, 256), (512, 512)] {
            assert_eq!(tc_variant(d).unwrap().1.dp, dp, "D = {d}");
        }
    }

    #[test]
    fn tile_shapes_fit_the_gpus() {
        // A block may opt in to 163 KiB of shared memory on sm_80 (H100: 227 KiB), 99 KiB on
        // sm_86/sm_89: all head dims but the VAE's 512 fit the latter.
        for (dp, _) in TC_VARIANTS {
            let c = TcConfig::new(dp);
            assert_eq!(c.bm, 16 * c.warps * if dp <= 64 { 2 } else { 1 });
            let limit = if dp <= 256 { 99 * 1024 } else { 163 * 1024 };
            assert!(c.smem_bytes() <= limit, "DP {dp}: {} bytes", c.smem_bytes());
            assert!(c.dp.is_multiple_of(16) && c.dv.is_multiple_of(16) && c.bn.is_multiple_of(16));
        }
        assert_eq!(TcConfig::new(64).smem_bytes(), (128 * 72 + 2 * 64 * 72 + 2 * 64 * 72) * 2);
        assert!(simt_smem_bytes(512) <= 163 * 1024);
    }
}
