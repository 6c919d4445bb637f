//! Launchers for kernels/norm.cu: GroupNorm (+ SiLU) with its two paths (one read through shared
//! memory when a group fits, else two phases over chunks), LayerNorm, and BatchNorm (statistics
//! with the running-stat update, apply, backward reductions and dx).

use super::elementwise::empty;
use super::kernels::{Kernel, Module, FLOATS};
use super::launch::{cfg_blocks, to_i32, PushKernelArg};
use super::CudaDevice;
use crate::plan::norm::{BatchNormCache, BatchNormGrads, BatchNormParams, BatchNormState, GroupNormParams, LayerNormParams};
use crate::tensor::{DType, Tensor};
use crate::Result;
use std::sync::Arc;

const M: Module = Module::Norm;

pub const GROUP_NORM_SMEM: Kernel = Kernel::new(M, "group_norm_smem", FLOATS);
pub const GROUP_NORM_STATS: Kernel = Kernel::new(M, "group_norm_stats", FLOATS);
pub const GROUP_NORM_APPLY: Kernel = Kernel::new(M, "group_norm_apply", FLOATS);
pub const LAYER_NORM_FWD: Kernel = Kernel::new(M, "layer_norm_fwd", FLOATS);
pub const BATCH_NORM_STATS: Kernel = Kernel::new(M, "batch_norm_stats", FLOATS);
pub const BATCH_NORM_APPLY: Kernel = Kernel::new(M, "batch_norm_apply", FLOATS);
pub const BATCH_NORM_BWD_REDUCE: Kernel = Kernel::new(M, "batch_norm_bwd_reduce", FLOATS);
pub const BATCH_NORM_BWD_DX: Kernel = Kernel::new(M, "batch_norm_bwd_dx", FLOATS);

pub const KERNELS: &[Kernel] = &[
    GROUP_NORM_SMEM,
    GROUP_NORM_STATS,
    GROUP_NORM_APPLY,
    LAYER_NORM_FWD,
    BATCH_NORM_STATS,
    BATCH_NORM_APPLY,
    BATCH_NORM_BWD_REDUCE,
    BATCH_NORM_BWD_DX,
];

/// Threads per block of the reduction and elementwise kernels (their `__launch_bounds__`).
const THREADS: u32 = 256;
/// Rows (warps) per block of the LayerNorm kernel.
const LN_ROWS_PER_BLOCK: usize = 8;
/// Elements per block in the two-phase GroupNorm (a multiple of every vector width).
const GN_CHUNK: usize = 8192;
/// The two-phase GroupNorm runs both phases over slices of groups of at most this many bytes of
/// x, so that the second read of a slice comes from L2 (50 MB on H100, 40 MB on A100).
const GN_SLICE_BYTES: usize = 16 << 20;
/// Shared memory kept back from the opt-in limit for the kernel's static smem.
const SMEM_RESERVE: usize = 1024;

/// How a GroupNorm call runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupNormPlan {
    /// One block per group, the group held in `smem` bytes of dynamic shared memory: x is read once.
    Smem { threads: u32, smem: usize },
    /// Partial sums over `chunks` chunks of `chunk` elements per group, then normalise, run over
    /// slices of `groups_per_slice` groups.
    TwoPhase { chunk: usize, chunks: usize, groups_per_slice: usize },
}

/// The plan for groups of `group_len` elements of `elem_bytes` each, given the device's opt-in
/// shared memory per block.
pub fn plan_group_norm(group_len: usize, elem_bytes: usize, max_smem: usize) -> GroupNormPlan {
    let smem = (group_len * elem_bytes).div_ceil(16) * 16;
    if smem + SMEM_RESERVE <= max_smem {
        // About two 16-byte vectors per thread, in whole warps.
        let vectors = smem / 16;
        let threads = (vectors.div_ceil(2).div_ceil(32) * 32).clamp(64, 1024) as u32;
        return GroupNormPlan::Smem { threads, smem };
    }
    let chunks = group_len.div_ceil(GN_CHUNK);
    let groups_per_slice = (GN_SLICE_BYTES / (group_len * elem_bytes)).max(1);
    GroupNormPlan::TwoPhase { chunk: GN_CHUNK, chunks, groups_per_slice }
}

/// The device address of an optional tensor, 0 (a null pointer) for None.
fn opt_ptr(t: Option<&Tensor>) -> Result<u64> {
    Ok(t.map(|t| t.cuda_ptr()).transpose()?.unwrap_or(0))
}

/// Whether every non-null address is 16-byte aligned (the kernels' vector path).
fn aligned16(ptrs: &[u64]) -> bool {
    ptrs.iter().all(|p| p % 16 == 0)
}

/// 16-byte vector width in elements of `dtype`.
fn vec_width(dtype: DType) -> usize {
    16 / dtype.size_in_bytes()
}

pub fn group_norm(dev: &Arc<CudaDevice>, x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>, p: &GroupNormParams) -> Result<Tensor> {
    let _r = super::nvtx::range(if p.silu { "group_norm_silu" } else { "group_norm" });
    let dtype = x.dtype();
    let mut y = empty(dev, x.shape().clone(), dtype)?;
    let len = p.group_len();
    let ngroups = p.n * p.groups;
    if len == 0 || ngroups == 0 {
        return Ok(y);
    }
    let (xp, yp, wp, bp) = (x.cuda_ptr()?, y.cuda_ptr_mut()?, opt_ptr(weight)?, opt_ptr(bias)?);
    let vec = i32::from(p.spatial.is_multiple_of(vec_width(dtype)) && aligned16(&[xp, yp]));
    let s = to_i32(p.spatial, "group_norm spatial size")?;
    let cpg = to_i32(p.channels_per_group(), "group_norm channels per group")?;
    let groups = to_i32(p.groups, "group_norm groups")?;
    let l = to_i32(len, "group_norm group size")?;
    let silu = i32::from(p.silu);
    let eps = p.eps;
    match plan_group_norm(len, dtype.size_in_bytes(), dev.info().max_shared_per_block) {
        GroupNormPlan::Smem { threads, smem } => {
            let f = dev.function_with_smem(&GROUP_NORM_SMEM, dtype, smem)?;
            let cfg = cfg_blocks(ngroups, threads, smem)?;
            // SAFETY: x and y hold N*G groups of cpg*S elements of `dtype` (y fresh); w and b are
            // null or hold C = G*cpg elements; smem bytes hold one group; vec only if aligned and
            // S is a multiple of the vector width.
            unsafe {
                dev.stream()
                    .launch_builder(&f)
                    .arg(&xp)
                    .arg(&wp)
                    .arg(&bp)
                    .arg(&yp)
                    .arg(&s)
                    .arg(&cpg)
                    .arg(&groups)
                    .arg(&eps)
                    .arg(&silu)
                    .arg(&vec)
                    .launch(cfg)
            }?;
        }
        GroupNormPlan::TwoPhase { chunk, chunks, groups_per_slice } => {
            let mut part = empty(dev, [ngroups * chunks * 2], DType::F32)?;
            let pp = part.cuda_ptr_mut()?;
            let stats = dev.function(&GROUP_NORM_STATS, dtype)?;
            let apply = dev.function(&GROUP_NORM_APPLY, dtype)?;
            let (chunk, nchunks) = (to_i32(chunk, "group_norm chunk")?, to_i32(chunks, "group_norm chunks")?);
            for g0 in (0..ngroups).step_by(groups_per_slice) {
                let cfg = cfg_blocks(groups_per_slice.min(ngroups - g0) * chunks, THREADS, 0)?;
                let group0 = g0 as i64;
                // SAFETY: x holds N*G groups of L elements; the grid covers groups
                // group0.. of this slice, chunk by chunk; part holds 2 floats per (group, chunk).
                unsafe {
                    dev.stream()
                        .launch_builder(&stats)
                        .arg(&xp)
                        .arg(&pp)
                        .arg(&l)
                        .arg(&chunk)
                        .arg(&nchunks)
                        .arg(&group0)
                        .arg(&vec)
                        .launch(cfg)
                }?;
                // SAFETY: as above; part holds this slice's partial sums (written just before on
                // the same stream); y holds the same elements as x; w and b null or [C].
                unsafe {
                    dev.stream()
                        .launch_builder(&apply)
                        .arg(&xp)
                        .arg(&pp)
                        .arg(&wp)
                        .arg(&bp)
                        .arg(&yp)
                        .arg(&l)
                        .arg(&s)
                        .arg(&cpg)
                        .arg(&groups)
                        .arg(&chunk)
                        .arg(&nchunks)
                        .arg(&group0)
                        .arg(&eps)
                        .arg(&silu)
                        .arg(&vec)
                        .launch(cfg)
                }?;
            }
        }
    }
    Ok(y)
}

pub fn layer_norm(dev: &Arc<CudaDevice>, x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>, p: &LayerNormParams) -> Result<Tensor> {
    let _r = super::nvtx::range("layer_norm");
    let dtype = x.dtype();
    let mut y = empty(dev, x.shape().clone(), dtype)?;
    if p.rows == 0 || p.c == 0 {
        return Ok(y);
    }
    let (xp, yp, wp, bp) = (x.cuda_ptr()?, y.cuda_ptr_mut()?, opt_ptr(weight)?, opt_ptr(bias)?);
    let vec = i32::from(p.c.is_multiple_of(vec_width(dtype)) && aligned16(&[xp, yp, wp, bp]));
    let rows = p.rows as i64;
    let c = to_i32(p.c, "layer_norm row length")?;
    let eps = p.eps;
    let f = dev.function(&LAYER_NORM_FWD, dtype)?;
    let cfg = cfg_blocks(p.rows.div_ceil(LN_ROWS_PER_BLOCK), LN_ROWS_PER_BLOCK as u32 * 32, 0)?;
    // SAFETY: x and y hold rows*C elements of `dtype` (y fresh); w and b are null or hold C
    // elements; vec only if every pointer is 16-byte aligned and C a multiple of the vector width.
    unsafe {
        dev.stream().launch_builder(&f).arg(&xp).arg(&wp).arg(&bp).arg(&yp).arg(&rows).arg(&c).arg(&eps).arg(&vec).launch(cfg)
    }?;
    Ok(y)
}

/// The (N, C, S) sizes as the batch-norm kernels take them, and the vector flag for `ptrs`.
fn bn_sizes(p: &BatchNormParams, dtype: DType, ptrs: &[u64]) -> Result<(i32, i32, i32, i32)> {
    to_i32(p.per_channel(), "batch_norm elements per channel")?;
    let vec = i32::from(p.spatial.is_multiple_of(vec_width(dtype)) && aligned16(ptrs));
    Ok((to_i32(p.n, "batch_norm N")?, to_i32(p.c, "batch_norm C")?, to_i32(p.spatial, "batch_norm spatial size")?, vec))
}

/// The launch of an elementwise batch-norm kernel over `total` elements (per vector when `vec`).
fn bn_elementwise_cfg(total: usize, dtype: DType, vec: i32) -> Result<super::launch::LaunchConfig> {
    let threads = if vec != 0 { total / vec_width(dtype) } else { total };
    cfg_blocks(threads.div_ceil(THREADS as usize), THREADS, 0)
}

/// y = (x - mean) * scale * w + b per channel; scale is rstd, or 1/sqrt(var + eps) when `from_var`.
#[allow(clippy::too_many_arguments)]
fn bn_apply(
    dev: &Arc<CudaDevice>,
    x: &Tensor,
    mean: &Tensor,
    scale_src: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    from_var: bool,
    p: &BatchNormParams,
) -> Result<Tensor> {
    let dtype = x.dtype();
    let mut y = empty(dev, x.shape().clone(), dtype)?;
    let total = x.numel();
    if total == 0 {
        return Ok(y);
    }
    let (xp, yp, wp, bp) = (x.cuda_ptr()?, y.cuda_ptr_mut()?, opt_ptr(weight)?, opt_ptr(bias)?);
    let (mp, sp) = (mean.cuda_ptr()?, scale_src.cuda_ptr()?);
    let (_, c, s, vec) = bn_sizes(p, dtype, &[xp, yp])?;
    let (total_i, eps, from_var) = (total as i64, p.eps, i32::from(from_var));
    let f = dev.function(&BATCH_NORM_APPLY, dtype)?;
    // SAFETY: x and y hold N*C*S elements of `dtype` (y fresh); mean and scale_src hold C f32;
    // w and b null or C elements; vec only if aligned and S a multiple of the vector width.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&xp)
            .arg(&mp)
            .arg(&sp)
            .arg(&wp)
            .arg(&bp)
            .arg(&yp)
            .arg(&total_i)
            .arg(&c)
            .arg(&s)
            .arg(&eps)
            .arg(&from_var)
            .arg(&vec)
            .launch(bn_elementwise_cfg(total, dtype, vec)?)
    }?;
    Ok(y)
}

pub fn batch_norm_train(
    dev: &Arc<CudaDevice>,
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    state: Option<&mut BatchNormState>,
    momentum: f32,
    p: &BatchNormParams,
) -> Result<(Tensor, BatchNormCache)> {
    let _r = super::nvtx::range("batch_norm_train");
    let dtype = x.dtype();
    let mut mean = empty(dev, [p.c], DType::F32)?;
    let mut rstd = empty(dev, [p.c], DType::F32)?;
    if p.c > 0 {
        let xp = x.cuda_ptr()?;
        let (mp, rp) = (mean.cuda_ptr_mut()?, rstd.cuda_ptr_mut()?);
        let (rmp, rvp) = match state {
            Some(st) => (st.running_mean.cuda_ptr_mut()?, st.running_var.cuda_ptr_mut()?),
            None => (0, 0),
        };
        let (n, c, s, vec) = bn_sizes(p, dtype, &[xp])?;
        let eps = p.eps;
        let f = dev.function(&BATCH_NORM_STATS, dtype)?;
        // SAFETY: x holds N*C*S elements of `dtype` with N*S > 1 (checked in ops); mean and rstd
        // hold C f32 (fresh); the running stats are null or C f32 each, owned by `state`.
        unsafe {
            dev.stream()
                .launch_builder(&f)
                .arg(&xp)
                .arg(&mp)
                .arg(&rp)
                .arg(&rmp)
                .arg(&rvp)
                .arg(&n)
                .arg(&c)
                .arg(&s)
                .arg(&eps)
                .arg(&momentum)
                .arg(&vec)
                .launch(cfg_blocks(p.c, THREADS, 0)?)
        }?;
    }
    let y = bn_apply(dev, x, &mean, &rstd, weight, bias, false, p)?;
    Ok((y, BatchNormCache { mean, rstd }))
}

pub fn batch_norm_eval(
    dev: &Arc<CudaDevice>,
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    state: &BatchNormState,
    p: &BatchNormParams,
) -> Result<Tensor> {
    let _r = super::nvtx::range("batch_norm_eval");
    bn_apply(dev, x, &state.running_mean, &state.running_var, weight, bias, true, p)
}

pub fn batch_norm_backward(
    dev: &Arc<CudaDevice>,
    dy: &Tensor,
    x: &Tensor,
    cache: &BatchNormCache,
    weight: Option<&Tensor>,
    p: &BatchNormParams,
) -> Result<BatchNormGrads> {
    let _r = super::nvtx::range("batch_norm_backward");
    let dtype = x.dtype();
    let mut dx = empty(dev, x.shape().clone(), dtype)?;
    let mut coef = empty(dev, [2 * p.c], DType::F32)?;
    let (mut dweight, mut dbias) = match weight {
        Some(_) => (Some(empty(dev, [p.c], dtype)?), Some(empty(dev, [p.c], dtype)?)),
        None => (None, None),
    };
    if p.c == 0 {
        return Ok(BatchNormGrads { dx, dweight, dbias });
    }
    let (dyp, xp, dxp, wp) = (dy.cuda_ptr()?, x.cuda_ptr()?, dx.cuda_ptr_mut()?, opt_ptr(weight)?);
    let (mp, rp, cp) = (cache.mean.cuda_ptr()?, cache.rstd.cuda_ptr()?, coef.cuda_ptr_mut()?);
    let dwp = dweight.as_mut().map(|t| t.cuda_ptr_mut()).transpose()?.unwrap_or(0);
    let dbp = dbias.as_mut().map(|t| t.cuda_ptr_mut()).transpose()?.unwrap_or(0);
    let (n, c, s, vec) = bn_sizes(p, dtype, &[dyp, xp, dxp])?;
    let reduce = dev.function(&BATCH_NORM_BWD_REDUCE, dtype)?;
    // SAFETY: dy and x hold N*C*S elements of `dtype`, N*S > 0; mean and rstd hold C f32; coef
    // 2*C f32 (fresh); dw and db null or C elements of `dtype` (fresh).
    unsafe {
        dev.stream()
            .launch_builder(&reduce)
            .arg(&dyp)
            .arg(&xp)
            .arg(&mp)
            .arg(&rp)
            .arg(&cp)
            .arg(&dwp)
            .arg(&dbp)
            .arg(&n)
            .arg(&c)
            .arg(&s)
            .arg(&vec)
            .launch(cfg_blocks(p.c, THREADS, 0)?)
    }?;
    let total = x.numel();
    let total_i = total as i64;
    let dxk = dev.function(&BATCH_NORM_BWD_DX, dtype)?;
    // SAFETY: as above; dx holds N*C*S elements (fresh); coef was written by the launch before on
    // the same stream; w null or C elements.
    unsafe {
        dev.stream()
            .launch_builder(&dxk)
            .arg(&dyp)
            .arg(&xp)
            .arg(&mp)
            .arg(&rp)
            .arg(&cp)
            .arg(&wp)
            .arg(&dxp)
            .arg(&total_i)
            .arg(&c)
            .arg(&s)
            .arg(&vec)
            .launch(bn_elementwise_cfg(total, dtype, vec)?)
    }?;
    Ok(BatchNormGrads { dx, dweight, dbias })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_norm_plans_follow_the_smem_limit() {
        let h100 = 227 * 1024;
        // SD 1.5 U-Net at 512 px: 10 channels x 64x64 per group fits in f16 and f32.
        assert_eq!(plan_group_norm(10 * 4096, 2, h100), GroupNormPlan::Smem { threads: 1024, smem: 81920 });
        assert!(matches!(plan_group_norm(10 * 4096, 4, h100), GroupNormPlan::Smem { smem: 163840, .. }));
        // Small groups get fewer threads, at least two warps.
        assert_eq!(plan_group_norm(40 * 64, 2, h100), GroupNormPlan::Smem { threads: 160, smem: 5120 });
        assert_eq!(plan_group_norm(3, 4, h100), GroupNormPlan::Smem { threads: 64, smem: 16 });
        // VAE at 512 px: 4 channels x 512x512 per group takes two phases, in 16 MiB slices.
        assert_eq!(
            plan_group_norm(4 * 262144, 2, h100),
            GroupNormPlan::TwoPhase { chunk: GN_CHUNK, chunks: 128, groups_per_slice: 8 }
        );
        // A group larger than a slice still makes progress one group at a time.
        assert!(matches!(plan_group_norm(1 << 24, 4, h100), GroupNormPlan::TwoPhase { groups_per_slice: 1, .. }));
    }
}
