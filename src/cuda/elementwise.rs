//! Launchers for kernels/elementwise.cu: activations, GEGLU, broadcasting binary ops, affine,
//! casts. Each allocates its output and launches one thread per output element.

use super::kernels::{Kernel, Module, FLOATS};
use super::launch::{cfg_1d, Dims, PushKernelArg};
use super::CudaDevice;
use crate::plan::elementwise::{BinaryOp, BroadcastPlan, Unary};
use crate::tensor::{DType, Shape, Storage, Tensor};
use crate::{Error, Result};
use std::sync::Arc;

const M: Module = Module::Elementwise;

pub const RELU_FWD: Kernel = Kernel::new(M, "relu_fwd", FLOATS);
pub const SILU_FWD: Kernel = Kernel::new(M, "silu_fwd", FLOATS);
pub const GELU_FWD: Kernel = Kernel::new(M, "gelu_fwd", FLOATS);
pub const GELU_TANH_FWD: Kernel = Kernel::new(M, "gelu_tanh_fwd", FLOATS);
pub const QUICK_GELU_FWD: Kernel = Kernel::new(M, "quick_gelu_fwd", FLOATS);
pub const RELU_BWD: Kernel = Kernel::new(M, "relu_bwd", FLOATS);
pub const SILU_BWD: Kernel = Kernel::new(M, "silu_bwd", FLOATS);
pub const GELU_BWD: Kernel = Kernel::new(M, "gelu_bwd", FLOATS);
pub const GELU_TANH_BWD: Kernel = Kernel::new(M, "gelu_tanh_bwd", FLOATS);
pub const QUICK_GELU_BWD: Kernel = Kernel::new(M, "quick_gelu_bwd", FLOATS);
pub const GEGLU_FWD: Kernel = Kernel::new(M, "geglu_fwd", FLOATS);
pub const ADD_BCAST: Kernel = Kernel::new(M, "add_bcast", FLOATS);
pub const SUB_BCAST: Kernel = Kernel::new(M, "sub_bcast", FLOATS);
pub const MUL_BCAST: Kernel = Kernel::new(M, "mul_bcast", FLOATS);
pub const DIV_BCAST: Kernel = Kernel::new(M, "div_bcast", FLOATS);
pub const AFFINE_FWD: Kernel = Kernel::new(M, "affine_fwd", FLOATS);
pub const CAST_F32: Kernel = Kernel::new(M, "cast_f32", &[DType::F16, DType::BF16]);
pub const CAST_F16: Kernel = Kernel::new(M, "cast_f16", &[DType::F32, DType::BF16]);
pub const CAST_BF16: Kernel = Kernel::new(M, "cast_bf16", &[DType::F32, DType::F16]);
pub const CAST_I64: Kernel = Kernel::new(M, "cast_i64", &[DType::I32, DType::F32]);
pub const CAST_I32: Kernel = Kernel::new(M, "cast_i32", &[DType::I64, DType::F32]);

pub const KERNELS: &[Kernel] = &[
    RELU_FWD, SILU_FWD, GELU_FWD, GELU_TANH_FWD, QUICK_GELU_FWD, RELU_BWD, SILU_BWD, GELU_BWD, GELU_TANH_BWD,
    QUICK_GELU_BWD, GEGLU_FWD, ADD_BCAST, SUB_BCAST, MUL_BCAST, DIV_BCAST, AFFINE_FWD, CAST_F32, CAST_F16, CAST_BF16,
    CAST_I64, CAST_I32,
];

fn fwd_kernel(op: Unary) -> &'static Kernel {
    match op {
        Unary::Relu => &RELU_FWD,
        Unary::Silu => &SILU_FWD,
        Unary::Gelu => &GELU_FWD,
        Unary::GeluTanh => &GELU_TANH_FWD,
        Unary::QuickGelu => &QUICK_GELU_FWD,
    }
}

fn bwd_kernel(op: Unary) -> &'static Kernel {
    match op {
        Unary::Relu => &RELU_BWD,
        Unary::Silu => &SILU_BWD,
        Unary::Gelu => &GELU_BWD,
        Unary::GeluTanh => &GELU_TANH_BWD,
        Unary::QuickGelu => &QUICK_GELU_BWD,
    }
}

/// A new uninitialised (or poisoned) tensor on `dev`.
pub fn empty(dev: &Arc<CudaDevice>, shape: impl Into<Shape>, dtype: DType) -> Result<Tensor> {
    let shape = shape.into();
    let buf = dev.alloc(shape.numel() * dtype.size_in_bytes())?;
    Ok(Tensor::from_storage(Storage::Cuda(buf), shape, dtype))
}

pub fn unary(dev: &Arc<CudaDevice>, x: &Tensor, op: Unary) -> Result<Tensor> {
    let _r = super::nvtx::range(op.name());
    let mut y = empty(dev, x.shape().clone(), x.dtype())?;
    let n = x.numel() as i64;
    if n == 0 {
        return Ok(y);
    }
    let f = dev.function(fwd_kernel(op), x.dtype())?;
    let (xp, yp) = (x.cuda_ptr()?, y.cuda_ptr_mut()?);
    // SAFETY: x and y hold n elements of x's dtype (the kernel's variant); y is fresh.
    unsafe { dev.stream().launch_builder(&f).arg(&xp).arg(&yp).arg(&n).launch(cfg_1d(n as usize, 256)) }?;
    Ok(y)
}

pub fn unary_backward(dev: &Arc<CudaDevice>, dy: &Tensor, x: &Tensor, op: Unary) -> Result<Tensor> {
    let _r = super::nvtx::range("unary_backward");
    let mut dx = empty(dev, x.shape().clone(), x.dtype())?;
    let n = x.numel() as i64;
    if n == 0 {
        return Ok(dx);
    }
    let f = dev.function(bwd_kernel(op), x.dtype())?;
    let (dyp, xp, dxp) = (dy.cuda_ptr()?, x.cuda_ptr()?, dx.cuda_ptr_mut()?);
    // SAFETY: dy, x and dx hold n elements of one dtype (checked in ops); dx is fresh.
    unsafe { dev.stream().launch_builder(&f).arg(&dyp).arg(&xp).arg(&dxp).arg(&n).launch(cfg_1d(n as usize, 256)) }?;
    Ok(dx)
}

pub fn geglu(dev: &Arc<CudaDevice>, x: &Tensor) -> Result<Tensor> {
    let _r = super::nvtx::range("geglu");
    let two_f = *x.dims().last().expect("rank checked in ops");
    let f_half = (two_f / 2) as i64;
    let rows = (x.numel() / two_f.max(1)) as i64;
    let mut dims = x.dims().to_vec();
    *dims.last_mut().expect("rank checked in ops") = two_f / 2;
    let mut y = empty(dev, dims, x.dtype())?;
    if rows * f_half == 0 {
        return Ok(y);
    }
    let f = dev.function(&GEGLU_FWD, x.dtype())?;
    let (xp, yp) = (x.cuda_ptr()?, y.cuda_ptr_mut()?);
    // SAFETY: x holds rows*2F elements, y rows*F, both of x's dtype; y is fresh.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&xp)
            .arg(&yp)
            .arg(&rows)
            .arg(&f_half)
            .launch(cfg_1d((rows * f_half) as usize, 256))
    }?;
    Ok(y)
}

pub fn binary(dev: &Arc<CudaDevice>, a: &Tensor, b: &Tensor, op: BinaryOp, plan: &BroadcastPlan) -> Result<Tensor> {
    let _r = super::nvtx::range(op.name());
    let kernel = match op {
        BinaryOp::Add => &ADD_BCAST,
        BinaryOp::Sub => &SUB_BCAST,
        BinaryOp::Mul => &MUL_BCAST,
        BinaryOp::Div => &DIV_BCAST,
    };
    let mut out = empty(dev, plan.out.clone(), a.dtype())?;
    let n = plan.out.numel() as i64;
    if n == 0 {
        return Ok(out);
    }
    let contig = i32::from(a.shape() == &plan.out && b.shape() == &plan.out);
    let out_dims = plan.out.dims();
    let shape = Dims::new(out_dims, &vec![0; out_dims.len()])?;
    let a_strides = Dims::new(out_dims, &plan.a_strides)?;
    let b_strides = Dims::new(out_dims, &plan.b_strides)?;
    let f = dev.function(kernel, a.dtype())?;
    let (ap, bp, op_) = (a.cuda_ptr()?, b.cuda_ptr()?, out.cuda_ptr_mut()?);
    // SAFETY: a and b hold the elements their broadcast strides address within their shapes
    // (the plan was built from those shapes); out holds n elements; all of one dtype.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&ap)
            .arg(&bp)
            .arg(&op_)
            .arg(&n)
            .arg(&contig)
            .arg(&shape)
            .arg(&a_strides)
            .arg(&b_strides)
            .launch(cfg_1d(n as usize, 256))
    }?;
    Ok(out)
}

pub fn affine(dev: &Arc<CudaDevice>, x: &Tensor, mul: f32, add: f32) -> Result<Tensor> {
    let _r = super::nvtx::range("affine");
    let mut y = empty(dev, x.shape().clone(), x.dtype())?;
    let n = x.numel() as i64;
    if n == 0 {
        return Ok(y);
    }
    let f = dev.function(&AFFINE_FWD, x.dtype())?;
    let (xp, yp) = (x.cuda_ptr()?, y.cuda_ptr_mut()?);
    // SAFETY: x and y hold n elements of one dtype; y is fresh.
    unsafe {
        dev.stream().launch_builder(&f).arg(&xp).arg(&yp).arg(&n).arg(&mul).arg(&add).launch(cfg_1d(n as usize, 256))
    }?;
    Ok(y)
}

/// x converted to `dtype` (float <-> float, i64 <-> i32, int -> f32).
pub fn cast(dev: &Arc<CudaDevice>, x: &Tensor, dtype: DType) -> Result<Tensor> {
    let kernel = match x.dtype() {
        DType::F32 => &CAST_F32,
        DType::F16 => &CAST_F16,
        DType::BF16 => &CAST_BF16,
        DType::I64 => &CAST_I64,
        DType::I32 => &CAST_I32,
    };
    if !kernel.supports(dtype) {
        return Err(Error::op("to_dtype", format!("no CUDA cast from {} to {dtype}", x.dtype())));
    }
    let mut y = empty(dev, x.shape().clone(), dtype)?;
    let n = x.numel() as i64;
    if n == 0 {
        return Ok(y);
    }
    let f = dev.function(kernel, dtype)?;
    let (xp, yp) = (x.cuda_ptr()?, y.cuda_ptr_mut()?);
    // SAFETY: x holds n elements of its dtype, y n elements of `dtype`, matching the kernel name.
    unsafe { dev.stream().launch_builder(&f).arg(&xp).arg(&yp).arg(&n).launch(cfg_1d(n as usize, 256)) }?;
    Ok(y)
}
