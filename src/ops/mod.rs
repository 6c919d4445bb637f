//! The ops the models and trainers are written in: one file per op family, each checking its
//! operands once (shape, dtype, device), summing them up in a plan (`src/plan`), and
//! dispatching to the CPU reference (`src/cpu`) or the CUDA backend (`src/cuda`), which trust
//! the plan. Models call these functions only; which kernel runs is decided here, by device,
//! dtype and shape. Each family re-exports its plan types, so callers name them from here.
//!
//! The CPU backend computes in f32. The CUDA backend takes f32, f16 and bf16 storage and
//! accumulates in f32. Backward ops sit beside their forward op (`conv2d` / `conv2d_backward`).

pub mod attention;
pub mod conv;
pub mod dropout;
pub mod elementwise;
pub mod flops;
pub mod gemm;
pub mod layout;
pub mod loss;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod sae;
pub mod softmax;

pub use attention::attention;
pub use conv::{conv2d, conv2d_backward, Conv2dGrads, Conv2dParams};
pub use dropout::{dropout, dropout_backward, DropoutKind};
pub use elementwise::{
    add, affine, binary, div, geglu, gelu, gelu_tanh, mul, quick_gelu, relu, scale, silu, sub, to_dtype, unary, unary_backward,
    BinaryOp, Unary,
};
pub use gemm::{linear, linear_backward, matmul, matmul_t, LinearGrads};
pub use layout::{cat, embedding, gather_rows, narrow, nchw_to_tokens, permute, tokens_to_nchw, upsample_nearest2x};
pub use loss::{cross_entropy, cross_entropy_backward};
pub use norm::{
    batch_norm_backward, batch_norm_eval, batch_norm_train, group_norm, layer_norm, BatchNormCache, BatchNormGrads,
    BatchNormState,
};
pub use optim::{adam_step, AdamConfig, AdamState};
pub use pool::{adaptive_avg_pool2d, adaptive_avg_pool2d_backward, global_avg_pool};
pub use reduce::{argmax, max, mean, sum, sum_all, topk};
pub use softmax::softmax;

use crate::tensor::{DType, Tensor};
use crate::{Error, Result};

/// Errors unless `t` holds floats.
pub(crate) fn check_float(op: &'static str, t: &Tensor) -> Result<()> {
    if !t.dtype().is_float() {
        return Err(Error::op(op, format!("expected a float tensor, got {} of shape {}", t.dtype(), t.shape())));
    }
    if t.device().is_cpu() && t.dtype() != DType::F32 {
        return Err(Error::op(
            op,
            format!("the CPU backend computes in f32; got a {} tensor of shape {} (convert with to_dtype)", t.dtype(), t.shape()),
        ));
    }
    Ok(())
}

/// Errors unless all tensors are on one device.
pub(crate) fn check_same_device(op: &'static str, ts: &[&Tensor]) -> Result<()> {
    if let Some(first) = ts.first() {
        let d = first.device();
        for t in &ts[1..] {
            if !t.device().same(&d) {
                return Err(Error::op(op, format!("operands on different devices: {} on {d}, {} on {}", first.shape(), t.shape(), t.device())));
            }
        }
    }
    Ok(())
}

/// Errors unless all tensors have one dtype.
pub(crate) fn check_same_dtype(op: &'static str, ts: &[&Tensor]) -> Result<()> {
    if let Some(first) = ts.first() {
        for t in &ts[1..] {
            if t.dtype() != first.dtype() {
                return Err(Error::op(op, format!("operands of different dtypes: {} {} and {} {}", first.shape(), first.dtype(), t.shape(), t.dtype())));
            }
        }
    }
    Ok(())
}
