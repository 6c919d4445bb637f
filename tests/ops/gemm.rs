use crate::common::*;
use revelio::ops::gemm::{linear, linear_backward, matmul, matmul_t};
use revelio::Tensor;

/// C[b] = op(A[b]) op(B[b]) in f64 by the definition. `a` is [ab, r, c] with ab = 1 for a rank-2
/// operand (broadcast); likewise `b`.
#[allow(clippy::too_many_arguments)]
fn naive_matmul(a: &[f64], b: &[f64], batch: usize, m: usize, n: usize, k: usize, ta: bool, tb: bool, a_batched: bool, b_batched: bool) -> Vec<f64> {
    let mut c = vec![0.0; batch * m * n];
    for bi in 0..batch {
        let ao = if a_batched { bi * m * k } else { 0 };
        let bo = if b_batched { bi * k * n } else { 0 };
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0;
                for p in 0..k {
                    let av = if ta { a[ao + p * m + i] } else { a[ao + i * k + p] };
                    let bv = if tb { b[bo + j * k + p] } else { b[bo + p * n + j] };
                    acc += av * bv;
                }
                c[(bi * m + i) * n + j] = acc;
            }
        }
    }
    c
}

fn vals(t: &Tensor) -> Vec<f64> {
    to_f64(&t.to_f32_vec().unwrap())
}

#[test]
fn matmul_every_transpose_and_batch_layout() {
    let (batch, m, n, k) = (3, 5, 7, 6);
    let mut seed = 0;
    for ta in [false, true] {
        for tb in [false, true] {
            for (a_batched, b_batched) in [(true, true), (true, false), (false, true), (false, false)] {
                seed += 1;
                let a_rc = if ta { [k, m] } else { [m, k] };
                let b_rc = if tb { [n, k] } else { [k, n] };
                let a_dims: Vec<usize> = if a_batched { vec![batch, a_rc[0], a_rc[1]] } else { a_rc.to_vec() };
                let b_dims: Vec<usize> = if b_batched { vec![batch, b_rc[0], b_rc[1]] } else { b_rc.to_vec() };
                let (a, b) = (randn(&a_dims, seed), randn(&b_dims, 100 + seed));
                let c = matmul_t(&a, &b, ta, tb).unwrap();
                let nb = if a_batched || b_batched { batch } else { 1 };
                let want_dims: Vec<usize> = if a_batched || b_batched { vec![batch, m, n] } else { vec![m, n] };
                assert_eq!(c.dims(), want_dims.as_slice());
                let want = naive_matmul(&vals(&a), &vals(&b), nb, m, n, k, ta, tb, a_batched, b_batched);
                let what = format!("matmul ta={ta} tb={tb} a {a_dims:?} b {b_dims:?}");
                assert_close(&what, &c.to_f32_vec().unwrap(), &f64_to_f32(&want), 1e-6);
            }
        }
    }
}

/// Sizes past the gemm crate's register blocks and cache blocks, many batches in parallel,
/// and an empty reduction.
#[test]
fn matmul_large_and_degenerate_sizes() {
    let (a, b) = (randn(&[130, 517], 1), randn(&[517, 67], 2));
    let want = naive_matmul(&vals(&a), &vals(&b), 1, 130, 67, 517, false, false, false, false);
    assert_close("matmul 130x517x67", &matmul(&a, &b).unwrap().to_f32_vec().unwrap(), &f64_to_f32(&want), 1e-6);
    let (a, b) = (randn(&[9, 17, 33], 3), randn(&[9, 33, 5], 4));
    let want = naive_matmul(&vals(&a), &vals(&b), 9, 17, 5, 33, false, false, true, true);
    assert_close("matmul batch 9", &matmul(&a, &b).unwrap().to_f32_vec().unwrap(), &f64_to_f32(&want), 1e-6);
    let empty = matmul(&cpu(vec![], &[3, 0]), &cpu(vec![], &[0, 2])).unwrap();
    assert_eq!(empty.to_f32_vec().unwrap(), vec![0.0; 6]);
}

#[test]
fn linear_matches_naive_f64() {
    let x = randn(&[2, 3, 10], 5);
    let w = randn(&[7, 10], 6);
    let b = randn(&[7], 7);
    let y = linear(&x, &w, Some(&b)).unwrap();
    assert_eq!(y.dims(), &[2, 3, 7]);
    let mut want = naive_matmul(&vals(&x), &vals(&w), 1, 6, 7, 10, false, true, false, false);
    for (i, v) in want.iter_mut().enumerate() {
        *v += vals(&b)[i % 7];
    }
    assert_close("linear", &y.to_f32_vec().unwrap(), &f64_to_f32(&want), 1e-6);
    let y = linear(&randn(&[10], 8), &w, None).unwrap();
    assert_eq!(y.dims(), &[7]);
}

#[test]
fn linear_backward_matches_finite_differences() {
    let (rows, in_f, out_f) = (6, 5, 4);
    let x = randn(&[2, 3, in_f], 11);
    let w = randn(&[out_f, in_f], 12);
    let b = randn(&[out_f], 13);
    let r = randn(&[2, 3, out_f], 14);
    let (xv, wv, bv, rv) = (vals(&x), vals(&w), vals(&b), vals(&r));
    let f = |xs: &[f64], ws: &[f64], bs: &[f64]| {
        let y = naive_matmul(xs, ws, 1, rows, out_f, in_f, false, true, false, false);
        y.iter().enumerate().map(|(i, v)| (v + bs[i % out_f]) * rv[i]).sum::<f64>()
    };
    let want_dx = fd_grad(&|xs| f(xs, &wv, &bv), &xv, 1e-6);
    let want_dw = fd_grad(&|ws| f(&xv, ws, &bv), &wv, 1e-6);
    let want_db = fd_grad(&|bs| f(&xv, &wv, bs), &bv, 1e-6);
    let g = linear_backward(&r, &x, &w, true, true).unwrap();
    let dx = g.dx.unwrap();
    assert_eq!(dx.dims(), x.dims());
    assert_close("linear dx", &dx.to_f32_vec().unwrap(), &f64_to_f32(&want_dx), 1e-5);
    assert_close("linear dW", &g.dweight.to_f32_vec().unwrap(), &f64_to_f32(&want_dw), 1e-5);
    assert_close("linear db", &g.dbias.unwrap().to_f32_vec().unwrap(), &f64_to_f32(&want_db), 1e-5);
    let g = linear_backward(&r, &x, &w, false, false).unwrap();
    assert!(g.dx.is_none() && g.dbias.is_none());
    assert_eq!(g.dweight.dims(), w.dims());
}

#[test]
fn gemm_ops_reject_bad_operands() {
    let err = matmul(&randn(&[2, 3], 1), &randn(&[4, 5], 2)).unwrap_err().to_string();
    assert!(err.contains("[2, 3]") && err.contains("[4, 5]"), "{err}");
    let err = matmul(&randn(&[2, 3, 4], 1), &randn(&[3, 4, 5], 2)).unwrap_err().to_string();
    assert!(err.contains("batch") && err.contains("[2, 3, 4]"), "{err}");
    let err = matmul(&randn(&[2, 2, 3, 4], 1), &randn(&[4, 5], 2)).unwrap_err().to_string();
    assert!(err.contains("[2, 2, 3, 4]"), "{err}");
    let err = linear(&randn(&[3, 6], 3), &randn(&[4, 5], 4), None).unwrap_err().to_string();
    assert!(err.contains("[3, 6]") && err.contains("[4, 5]"), "{err}");
    let err = linear(&randn(&[3, 5], 3), &randn(&[4, 5], 4), Some(&randn(&[5], 5))).unwrap_err().to_string();
    assert!(err.contains("bias [5]"), "{err}");
    let err = linear_backward(&randn(&[3, 5], 6), &randn(&[3, 5], 3), &randn(&[4, 5], 4), true, true).unwrap_err().to_string();
    assert!(err.contains("dy [3, 5]") && err.contains("[3, 4]"), "{err}");
    let half = revelio::ops::to_dtype(&randn(&[2, 3], 1), revelio::DType::F16).unwrap();
    assert!(matmul(&half, &half).is_err());
}
