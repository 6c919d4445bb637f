//! Matrix products on the CPU (f32) through the `gemm` crate: packed, SIMD (AVX2/AVX-512/NEON
//! picked at run time), rayon-parallel; the well-kept crate candle uses for its CPU matmul.
//! `sgemm` is the one safe entry point (strided views, so transposes cost nothing); matmul,
//! linear and the conv family (src/cpu/conv.rs) go through it. The reference for cuBLAS.

use crate::plan::gemm::MatmulPlan;
use crate::tensor::{Device, Tensor};
use crate::Result;
use gemm::Parallelism;
use rayon::prelude::*;

/// A read-only strided matrix: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// A row-major [rows, cols] matrix.
    pub fn rows(data: &'a [f32], cols: usize) -> View<'a> {
        View { data, rs: cols, cs: 1 }
    }

    /// The transpose of a row-major [rows, cols] matrix, seen as [cols, rows].
    pub fn cols(data: &'a [f32], cols: usize) -> View<'a> {
        View { data, rs: 1, cs: cols }
    }

    /// Whether every element of an [r, c] matrix lies inside `data`.
    fn covers(&self, r: usize, c: usize) -> bool {
        r == 0 || c == 0 || (r - 1) * self.rs + (c - 1) * self.cs < self.data.len()
    }
}

/// Rayon-parallel inside the product, or one thread (when the caller already runs products in
/// parallel).
pub(crate) fn parallelism(parallel: bool) -> Parallelism {
    if parallel {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    }
}

/// dst[m, n] (row stride `dst_rs`, unit column stride) = a[m, k] @ b[k, n], added to what dst
/// holds when `accumulate`, else overwriting it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(m: usize, n: usize, k: usize, dst: &mut [f32], dst_rs: usize, accumulate: bool, a: View, b: View, par: Parallelism) {
    assert!(a.covers(m, k) && b.covers(k, n), "sgemm: operand views exceed their slices");
    assert!(m == 0 || n == 0 || (m - 1) * dst_rs + n <= dst.len(), "sgemm: dst view exceeds its slice");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the asserts above keep every element the strides address inside its slice; dst
    // is borrowed mutably, so it aliases neither operand. gemm computes
    // dst = alpha * dst + beta * a @ b and reads dst only when `read_dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// C[b] = op(A[b]) @ op(B[b]) as `plan` describes.
pub fn matmul(a: &Tensor, b: &Tensor, plan: &MatmulPlan) -> Result<Tensor> {
    let av = a.cpu_f32("matmul")?;
    let bv = b.cpu_f32("matmul")?;
    let mut out = vec![0.0f32; plan.batch * plan.m * plan.n];
    run_batches(av, bv, &mut out, plan, false);
    Tensor::from_vec(out, plan.out_shape(), &Device::Cpu)
}

/// The batched product into `out` (added to it when `accumulate`). Many small products run
/// in parallel over the batch; otherwise each product is parallel inside.
fn run_batches(av: &[f32], bv: &[f32], out: &mut [f32], plan: &MatmulPlan, accumulate: bool) {
    let MatmulPlan { m, n, k, .. } = *plan;
    let (a_size, b_size) = (m * k, k * n);
    let one = |i: usize, c: &mut [f32], par: Parallelism| {
        let a_off = if plan.a_batched { i * a_size } else { 0 };
        let b_off = if plan.b_batched { i * b_size } else { 0 };
        let a = &av[a_off..a_off + a_size];
        let b = &bv[b_off..b_off + b_size];
        let a_view = if plan.trans_a { View::cols(a, m) } else { View::rows(a, k) };
        let b_view = if plan.trans_b { View::cols(b, k) } else { View::rows(b, n) };
        sgemm(m, n, k, c, n, accumulate, a_view, b_view, par);
    };
    let chunk = (m * n).max(1);
    if plan.batch >= rayon::current_num_threads() && plan.batch > 1 {
        out.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| one(i, c, Parallelism::None));
    } else {
        out.chunks_mut(chunk).enumerate().for_each(|(i, c)| one(i, c, Parallelism::Rayon(0)));
    }
}

/// x: [rows, in], weight: [out, in], bias: [out] -> [rows, out] = x W^T + b.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, plan: &MatmulPlan) -> Result<Tensor> {
    let xv = x.cpu_f32("linear")?;
    let wv = weight.cpu_f32("linear")?;
    let mut out = vec![0.0f32; plan.m * plan.n];
    if let Some(b) = bias {
        let bv = b.cpu_f32("linear")?;
        out.par_chunks_mut(plan.n.max(1)).for_each(|row| row.copy_from_slice(bv));
    }
    run_batches(xv, wv, &mut out, plan, bias.is_some());
    Tensor::from_vec(out, plan.out_shape(), &Device::Cpu)
}

/// x: [rows, cols] -> [cols], the sum of every row (f64 accumulation).
pub fn sum_rows(x: &Tensor) -> Result<Tensor> {
    let (rows, cols) = x.dims2("sum_rows")?;
    let xv = x.cpu_f32("sum_rows")?;
    let mut acc = vec![0.0f64; cols];
    for row in xv.chunks_exact(cols.max(1)).take(rows) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v as f64;
        }
    }
    Tensor::from_vec(acc.into_iter().map(|v| v as f32).collect::<Vec<f32>>(), [cols], &Device::Cpu)
}
