//! Matrix products: `matmul` / `matmul_t` (batched, with a rank-2 side broadcast over the batch
//! and either operand optionally stored transposed), and the dense layer `linear` with its
//! backward. Shapes are checked here and turned into a `MatmulPlan` the backends trust: the CPU
//! runs the `gemm` crate, CUDA runs cuBLAS (`cublasGemmStridedBatchedEx`, f32 accumulation).
//!
//! Legend: B = batch, M = rows of the result, N = columns, K = the reduced dim.
//! Accumulation rule of `linear_backward`: every gradient is returned fresh (`=`), never added
//! into an existing buffer.

use super::elementwise::add;
use super::{check_float, check_same_device, check_same_dtype};
use crate::tensor::{Device, Shape, Tensor};
use crate::{ensure_op, Error, Result};
pub use crate::plan::gemm::MatmulPlan;

/// a: [M, K] or [B, M, K], b: [K, N] or [B, K, N] -> [M, N] or [B, M, N]. A rank-2 operand
/// is broadcast over the other's batch.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    matmul_t(a, b, false, false)
}

/// As `matmul`, with a stored [.., K, M] when `trans_a` and b stored [.., N, K] when
/// `trans_b` -> [.., M, N].
pub fn matmul_t(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    let _p = crate::profile::op("matmul");
    const OP: &str = "matmul";
    check_float(OP, a)?;
    check_float(OP, b)?;
    check_same_device(OP, &[a, b])?;
    check_same_dtype(OP, &[a, b])?;
    let plan = MatmulPlan::new(OP, a.shape(), b.shape(), trans_a, trans_b)?;
    super::flops::add(2 * (plan.batch * plan.m * plan.n * plan.k) as u64);
    match a.device() {
        Device::Cpu => crate::cpu::gemm::matmul(a, b, &plan),
        Device::Cuda(d) => crate::cuda::gemm::matmul(&d, a, b, &plan),
    }
}

/// Checks a [.., in] input against a PyTorch-layout weight [out, in]; returns (rows, in, out).
fn linear_dims(op: &'static str, x: &Tensor, weight: &Tensor) -> Result<(usize, usize, usize)> {
    let (out_f, in_f) = weight.dims2(op)?;
    let last = *x.dims().last().ok_or_else(|| Error::op(op, format!("x must have rank >= 1, got shape {}", x.shape())))?;
    ensure_op!(last == in_f, op, "x {} has {last} features, weight {} takes {in_f}", x.shape(), weight.shape());
    Ok((x.numel() / in_f.max(1), in_f, out_f))
}

/// x: [.., in], weight: [out, in] (PyTorch layout), bias: [out] -> [.., out]; y = x W^T + b.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let _p = crate::profile::op("linear");
    const OP: &str = "linear";
    check_float(OP, x)?;
    let mut all = vec![x, weight];
    all.extend(bias);
    check_same_device(OP, &all)?;
    check_same_dtype(OP, &all)?;
    let (rows, in_f, out_f) = linear_dims(OP, x, weight)?;
    if let Some(b) = bias {
        ensure_op!(b.dims() == [out_f], OP, "bias {} must be [{out_f}] for weight {}", b.shape(), weight.shape());
    }
    let mut out_dims = x.dims().to_vec();
    *out_dims.last_mut().expect("rank >= 1 checked") = out_f;
    let x2 = x.reshape([rows, in_f])?;
    let plan = MatmulPlan::new(OP, x2.shape(), weight.shape(), false, true)?;
    super::flops::add(2 * (plan.batch * plan.m * plan.n * plan.k) as u64);
    let y = match x.device() {
        Device::Cpu => crate::cpu::gemm::linear(&x2, weight, bias, &plan)?,
        // cuBLAS runs the product; the bias is a broadcasting add.
        Device::Cuda(d) => {
            let _r = crate::cuda::nvtx::range("linear");
            let y = crate::cuda::gemm::matmul(&d, &x2, weight, &plan)?;
            match bias {
                Some(b) => add(&y, b)?,
                None => y,
            }
        }
    };
    y.reshape(out_dims)
}

/// Gradients of `linear`. `dx` is present when asked for, `dbias` when the layer has a bias.
#[derive(Debug, Clone)]
pub struct LinearGrads {
    /// [.., in], like x.
    pub dx: Option<Tensor>,
    /// [out, in], like the weight.
    pub dweight: Tensor,
    /// [out].
    pub dbias: Option<Tensor>,
}

/// dy: [.., out], x: [.., in] (the forward input), weight: [out, in] -> dx = dy W [.., in]
/// (when `need_dx`), dW = dy^T x [out, in], db = sum of dy over all rows [out] (when `has_bias`).
pub fn linear_backward(dy: &Tensor, x: &Tensor, weight: &Tensor, need_dx: bool, has_bias: bool) -> Result<LinearGrads> {
    let _p = crate::profile::op("linear_backward");
    const OP: &str = "linear_backward";
    check_float(OP, x)?;
    check_same_device(OP, &[dy, x, weight])?;
    check_same_dtype(OP, &[dy, x, weight])?;
    let (rows, in_f, out_f) = linear_dims(OP, x, weight)?;
    let mut want_dy = x.dims().to_vec();
    *want_dy.last_mut().expect("rank >= 1 checked") = out_f;
    ensure_op!(dy.dims() == want_dy.as_slice(), OP, "dy {} must be {} for x {} and weight {}", dy.shape(), Shape::new(want_dy.clone()), x.shape(), weight.shape());
    let dy2 = dy.reshape([rows, out_f])?;
    let x2 = x.reshape([rows, in_f])?;
    let dx = if need_dx { Some(matmul(&dy2, weight)?.reshape(x.shape().clone())?) } else { None };
    let dweight = matmul_t(&dy2, &x2, true, false)?;
    let dbias = if has_bias {
        Some(match dy.device() {
            Device::Cpu => crate::cpu::gemm::sum_rows(&dy2)?,
            Device::Cuda(d) => crate::cuda::gemm::sum_rows(&d, &dy2)?,
        })
    } else {
        None
    };
    Ok(LinearGrads { dx, dweight, dbias })
}
