//! Matrix products: `matmul` / `matmul_t` (batched, with a rank-2 side broadcast over the batch
//! and either operand optionally stored transposed), and the dense layer `linear` with its
//! backward. Shapes are checked here and turned into a `MatmulPlan` the backends trust: the CPU
//! runs the `gemm` crate, CUDA runs cuBLAS (`cublasGemmStridedBatchedEx`, f32 accumulation).
//!
//! Legend: B = batch, M = rows of the result, N = columns, K = the reduced dim.
//! Accumulation rule of `linear_backward`: every gradient is returned fresh (`=`), never added
//! into an existing buffer.

use super::{check_float, check_same_device, check_same_dtype};
use crate::tensor::{Device, Shape, Tensor};
use crate::{ensure_op, Error, Result};

/// One batched product `C[b] = op(A[b]) @ op(B[b])` as the backends run it: op(A) is [m, k],
/// op(B) is [k, n], C is [batch, m, n] row-major. A is stored [k, m] when `trans_a`, B is
/// stored [n, k] when `trans_b`. An operand with `*_batched == false` is one matrix reused for
/// every batch entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulPlan {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub a_batched: bool,
    pub b_batched: bool,
}

impl MatmulPlan {
    /// The plan for `a` and `b` as `matmul_t` takes them, or an error naming both shapes.
    pub fn new(op: &'static str, a: &Shape, b: &Shape, trans_a: bool, trans_b: bool) -> Result<MatmulPlan> {
        let split = |s: &Shape, name: &str| -> Result<(Option<usize>, usize, usize)> {
            match *s.dims() {
                [r, c] => Ok((None, r, c)),
                [bt, r, c] => Ok((Some(bt), r, c)),
                _ => Err(Error::op(op, format!("{name} must be rank 2 or 3, got shape {s} (with the other operand {})", if name == "a" { b } else { a }))),
            }
        };
        let (ab, ar, ac) = split(a, "a")?;
        let (bb, br, bc) = split(b, "b")?;
        let (m, ka) = if trans_a { (ac, ar) } else { (ar, ac) };
        let (kb, n) = if trans_b { (bc, br) } else { (br, bc) };
        ensure_op!(
            ka == kb,
            op,
            "inner dims differ: a {a}{} gives K = {ka}, b {b}{} gives K = {kb}",
            if trans_a { " (transposed)" } else { "" },
            if trans_b { " (transposed)" } else { "" }
        );
        let batch = match (ab, bb) {
            (Some(x), Some(y)) => {
                ensure_op!(x == y, op, "batch sizes differ: a {a}, b {b}");
                x
            }
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => 1,
        };
        Ok(MatmulPlan { batch, m, n, k: ka, trans_a, trans_b, a_batched: ab.is_some(), b_batched: bb.is_some() })
    }

    /// The result's shape: [m, n] when neither operand has a batch dim, else [batch, m, n].
    pub fn out_shape(&self) -> Shape {
        if self.a_batched || self.b_batched {
            Shape::from([self.batch, self.m, self.n])
        } else {
            Shape::from([self.m, self.n])
        }
    }
}

/// a: [M, K] or [B, M, K], b: [K, N] or [B, K, N] -> [M, N] or [B, M, N]. A rank-2 operand
/// is broadcast over the other's batch.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    matmul_t(a, b, false, false)
}

/// As `matmul`, with a stored [.., K, M] when `trans_a` and b stored [.., N, K] when
/// `trans_b` -> [.., M, N].
pub fn matmul_t(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
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
        Device::Cuda(d) => crate::cuda::gemm::linear(&d, &x2, weight, bias, &plan)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_reads_transposes_and_batches() {
        let p = MatmulPlan::new("t", &Shape::from([4, 3, 5]), &Shape::from([7, 3]), true, true).unwrap();
        assert_eq!((p.batch, p.m, p.n, p.k), (4, 5, 7, 3));
        assert!(p.a_batched && !p.b_batched);
        assert_eq!(p.out_shape(), Shape::from([4, 5, 7]));
        let p = MatmulPlan::new("t", &Shape::from([2, 3]), &Shape::from([3, 6]), false, false).unwrap();
        assert_eq!(p.out_shape(), Shape::from([2, 6]));
        assert!(MatmulPlan::new("t", &Shape::from([2, 3, 4]), &Shape::from([3, 4, 5]), false, false).is_err());
        assert!(MatmulPlan::new("t", &Shape::from([2, 3]), &Shape::from([4, 5]), false, false).is_err());
    }
}
