//! Matrix products on CUDA through cuBLAS (src/cuda/cublas.rs: `cublasGemmStridedBatchedEx`,
//! f32, f16 or bf16 storage, f32 accumulation, no TF32). No kernels of our own: `ops::linear`
//! adds the bias with a broadcasting add (kernels/elementwise.cu), and the bias gradient is a
//! product with a ones vector.

use super::elementwise::empty;
use super::CudaDevice;
use crate::cuda::cublas::Gemm;
use crate::plan::gemm::MatmulPlan;
use crate::tensor::{Device, Tensor};
use crate::Result;
use std::sync::Arc;

/// C[b] = op(A[b]) @ op(B[b]) as `plan` describes, in a's dtype.
pub fn matmul(dev: &Arc<CudaDevice>, a: &Tensor, b: &Tensor, plan: &MatmulPlan) -> Result<Tensor> {
    let _r = super::nvtx::range("matmul");
    let MatmulPlan { batch, m, n, k, .. } = *plan;
    if batch * m * n == 0 {
        return empty(dev, plan.out_shape(), a.dtype());
    }
    if k == 0 {
        return Tensor::zeros(plan.out_shape(), a.dtype(), &Device::Cuda(dev.clone()));
    }
    let mut c = empty(dev, plan.out_shape(), a.dtype())?;
    let g = Gemm {
        m,
        n,
        k,
        batch,
        trans_a: plan.trans_a,
        trans_b: plan.trans_b,
        stride_a: if plan.a_batched { m * k } else { 0 },
        stride_b: if plan.b_batched { k * n } else { 0 },
        stride_c: m * n,
        alpha: 1.0,
        beta: 0.0,
    };
    let (ap, bp, cp) = (a.cuda_ptr()?, b.cuda_ptr()?, c.cuda_ptr_mut()?);
    // SAFETY: a holds (batch or 1) * m * k elements and b (batch or 1) * k * n, laid out as the
    // plan's transposes say (checked in ops); c is fresh with batch * m * n; all of a's dtype
    // and on `dev`.
    unsafe { dev.blas()?.gemm(a.dtype(), &g, ap, bp, cp) }?;
    Ok(c)
}

/// x: [rows, cols] -> [cols], the sum of every row: x^T @ ones with f32 accumulation.
pub fn sum_rows(dev: &Arc<CudaDevice>, x: &Tensor) -> Result<Tensor> {
    let _r = super::nvtx::range("sum_rows");
    let (rows, cols) = x.dims2("sum_rows")?;
    let zeros = Tensor::zeros([rows, 1], x.dtype(), &Device::Cuda(dev.clone()))?;
    let ones = super::elementwise::affine(dev, &zeros, 0.0, 1.0)?;
    let plan = MatmulPlan { batch: 1, m: cols, n: 1, k: rows, trans_a: true, trans_b: false, a_batched: false, b_batched: false };
    matmul(dev, x, &ones, &plan)?.reshape([cols])
}
