//! Launchers for kernels/reduce.cu: one-dim reductions (a block per row when the reduced dim is
//! innermost, a thread per output otherwise), the two-pass sum of all elements, and top-k.

use super::elementwise::empty;
use super::kernels::{Kernel, Module, FLOATS};
use super::launch::{cfg_1d, cfg_blocks, to_i32, PushKernelArg};
use super::CudaDevice;
use crate::plan::reduce::{ReduceOp, ReducePlan};
use crate::tensor::{DType, Tensor};
use crate::{Error, Result};
use std::sync::Arc;

const M: Module = Module::Reduce;

pub const REDUCE_ROWS: Kernel = Kernel::new(M, "reduce_rows", FLOATS);
pub const REDUCE_COLS: Kernel = Kernel::new(M, "reduce_cols", FLOATS);
pub const ARGMAX_ROWS: Kernel = Kernel::new(M, "argmax_rows", FLOATS);
pub const ARGMAX_COLS: Kernel = Kernel::new(M, "argmax_cols", FLOATS);
pub const SUM_ALL_PARTIAL: Kernel = Kernel::new(M, "sum_all_partial", FLOATS);
pub const SUM_ALL_FINAL: Kernel = Kernel::new(M, "sum_all_final", FLOATS);
pub const TOPK_ROWS: Kernel = Kernel::new(M, "topk_rows", FLOATS);

pub const KERNELS: &[Kernel] =
    &[REDUCE_ROWS, REDUCE_COLS, ARGMAX_ROWS, ARGMAX_COLS, SUM_ALL_PARTIAL, SUM_ALL_FINAL, TOPK_ROWS];

/// Threads per block for a block-per-row reduction of rows of n: enough for ~8 elements each,
/// a multiple of 32 in 32..=256.
fn row_block(n: usize) -> u32 {
    (n.div_ceil(8).next_power_of_two()).clamp(32, 256) as u32
}

/// The op code the kernels take (RED_SUM / RED_MEAN / RED_MAX in reduce.cu).
fn op_code(op: ReduceOp) -> i32 {
    match op {
        ReduceOp::Sum => 0,
        ReduceOp::Mean => 1,
        ReduceOp::Max => 2,
    }
}

pub fn reduce(dev: &Arc<CudaDevice>, x: &Tensor, op: ReduceOp, plan: &ReducePlan) -> Result<Tensor> {
    let _r = super::nvtx::range(op.name());
    let mut y = empty(dev, plan.out.clone(), x.dtype())?;
    let outs = plan.outer * plan.inner;
    if outs == 0 {
        return Ok(y);
    }
    let (xp, yp) = (x.cuda_ptr()?, y.cuda_ptr_mut()?);
    let (n, code) = (plan.n as i64, op_code(op));
    if plan.inner == 1 {
        let f = dev.function(&REDUCE_ROWS, x.dtype())?;
        let cfg = cfg_blocks(outs, row_block(plan.n), 0)?;
        // SAFETY: x holds rows*n elements and y rows elements of x's dtype; one block per row.
        unsafe { dev.stream().launch_builder(&f).arg(&xp).arg(&yp).arg(&n).arg(&code).launch(cfg) }?;
    } else {
        let f = dev.function(&REDUCE_COLS, x.dtype())?;
        let (outer, inner) = (plan.outer as i64, plan.inner as i64);
        // SAFETY: x holds outer*n*inner elements and y outer*inner of x's dtype; the kernel
        // guards t < outer*inner.
        unsafe {
            dev.stream()
                .launch_builder(&f)
                .arg(&xp)
                .arg(&yp)
                .arg(&outer)
                .arg(&n)
                .arg(&inner)
                .arg(&code)
                .launch(cfg_1d(outs, 256))
        }?;
    }
    Ok(y)
}

pub fn argmax(dev: &Arc<CudaDevice>, x: &Tensor, plan: &ReducePlan) -> Result<Tensor> {
    let _r = super::nvtx::range("argmax");
    let mut y = empty(dev, plan.out.clone(), DType::I64)?;
    let outs = plan.outer * plan.inner;
    if outs == 0 {
        return Ok(y);
    }
    let (xp, yp) = (x.cuda_ptr()?, y.cuda_ptr_mut()?);
    let n = plan.n as i64;
    if plan.inner == 1 {
        let f = dev.function(&ARGMAX_ROWS, x.dtype())?;
        let cfg = cfg_blocks(outs, row_block(plan.n), 0)?;
        // SAFETY: x holds rows*n elements of its dtype, y rows i64; one block per row.
        unsafe { dev.stream().launch_builder(&f).arg(&xp).arg(&yp).arg(&n).launch(cfg) }?;
    } else {
        let f = dev.function(&ARGMAX_COLS, x.dtype())?;
        let (outer, inner) = (plan.outer as i64, plan.inner as i64);
        // SAFETY: x holds outer*n*inner elements of its dtype, y outer*inner i64; guarded.
        unsafe {
            dev.stream()
                .launch_builder(&f)
                .arg(&xp)
                .arg(&yp)
                .arg(&outer)
                .arg(&n)
                .arg(&inner)
                .launch(cfg_1d(outs, 256))
        }?;
    }
    Ok(y)
}

/// Blocks of the first sum_all pass: one per 2048 elements, at most 1024 (the second pass is
/// one block of 1024 threads). Depends on n only, so the sum is deterministic.
fn sum_all_blocks(n: usize) -> usize {
    n.div_ceil(256 * 8).clamp(1, 1024)
}

pub fn sum_all(dev: &Arc<CudaDevice>, x: &Tensor) -> Result<Tensor> {
    let _r = super::nvtx::range("sum_all");
    let mut y = empty(dev, (), x.dtype())?;
    let g = sum_all_blocks(x.numel());
    let mut partial = empty(dev, [g], DType::F32)?;
    let n = x.numel() as i64;
    let g32 = g as i32;
    let (xp, pp, yp) = (x.cuda_ptr()?, partial.cuda_ptr_mut()?, y.cuda_ptr_mut()?);
    let f1 = dev.function(&SUM_ALL_PARTIAL, x.dtype())?;
    let f2 = dev.function(&SUM_ALL_FINAL, x.dtype())?;
    // SAFETY: x holds n elements of its dtype; partial holds g <= 1024 f32, one per block.
    unsafe { dev.stream().launch_builder(&f1).arg(&xp).arg(&pp).arg(&n).launch(cfg_blocks(g, 256, 0)?) }?;
    // SAFETY: partial holds g f32 written above (same stream); y holds one element; one block
    // of 1024 >= g threads.
    unsafe { dev.stream().launch_builder(&f2).arg(&pp).arg(&yp).arg(&g32).launch(cfg_blocks(1, 1024, 0)?) }?;
    Ok(y)
}

/// The largest k a CUDA top-k takes (the block sorts its k candidates in shared memory).
pub const TOPK_MAX_K_CUDA: usize = 1024;

pub fn topk(dev: &Arc<CudaDevice>, x: &Tensor, k: usize) -> Result<(Tensor, Tensor)> {
    let _r = super::nvtx::range("topk");
    if k > TOPK_MAX_K_CUDA {
        return Err(Error::op("topk", format!("k = {k} for x {}: the CUDA top-k takes k <= {TOPK_MAX_K_CUDA}", x.shape())));
    }
    let n = *x.dims().last().expect("rank checked in ops");
    to_i32(n, "topk row length N")?;
    let rows = x.numel() / n;
    let mut dims = x.dims().to_vec();
    *dims.last_mut().expect("rank checked in ops") = k;
    let mut vals = empty(dev, dims.clone(), x.dtype())?;
    let mut idx = empty(dev, dims, DType::I64)?;
    if rows == 0 {
        return Ok((vals, idx));
    }
    let p = k.next_power_of_two();
    let f = dev.function(&TOPK_ROWS, x.dtype())?;
    let (xp, vp, ip) = (x.cuda_ptr()?, vals.cuda_ptr_mut()?, idx.cuda_ptr_mut()?);
    let (n64, k32, p32) = (n as i64, k as i32, p as i32);
    // SAFETY: x holds rows*n elements (n < 2^31), vals rows*k of x's dtype, idx rows*k i64;
    // 1 <= k <= n and k <= 1024; the dynamic shared memory holds p >= k u64 candidates; one
    // block of 256 threads per row.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&xp)
            .arg(&vp)
            .arg(&ip)
            .arg(&n64)
            .arg(&k32)
            .arg(&p32)
            .launch(cfg_blocks(rows, 256, p * 8)?)
    }?;
    Ok((vals, idx))
}
