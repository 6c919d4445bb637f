use crate::common::*;
use revelio::ops::reduce;
use revelio::{DType, Device, Tensor};

/// Naive f64 reduction of x (dims) over dim d: (outer, inner) outputs, each folding the n
/// elements x[o, 0..n, j] with `f`.
fn naive(xs: &[f32], dims: &[usize], d: usize, f: impl Fn(&[f64]) -> f64) -> Vec<f32> {
    let outer: usize = dims[..d].iter().product();
    let inner: usize = dims[d + 1..].iter().product();
    let n = dims[d];
    let mut out = Vec::new();
    for o in 0..outer {
        for j in 0..inner {
            let col: Vec<f64> = (0..n).map(|i| xs[(o * n + i) * inner + j] as f64).collect();
            out.push(f(&col) as f32);
        }
    }
    out
}

#[test]
fn sum_mean_max_match_naive_over_every_dim() {
    let dims = [3, 4, 5];
    let x = randn(&dims, 1);
    let xs = x.to_f32_vec().unwrap();
    for d in 0..3 {
        let mut kept = dims.to_vec();
        kept[d] = 1;
        let mut removed = dims.to_vec();
        removed.remove(d);
        let sum = naive(&xs, &dims, d, |c| c.iter().sum());
        let mean = naive(&xs, &dims, d, |c| c.iter().sum::<f64>() / c.len() as f64);
        let max = naive(&xs, &dims, d, |c| c.iter().cloned().fold(f64::NEG_INFINITY, f64::max));
        // Negative dims count from the end.
        let neg = d as isize - 3;
        let s = reduce::sum(&x, d as isize, false).unwrap();
        assert_eq!(s.dims(), &removed[..]);
        assert_close("sum", &s.to_f32_vec().unwrap(), &sum, 1e-6);
        let m = reduce::mean(&x, neg, true).unwrap();
        assert_eq!(m.dims(), &kept[..]);
        assert_close("mean", &m.to_f32_vec().unwrap(), &mean, 1e-6);
        let mx = reduce::max(&x, d as isize, true).unwrap();
        assert_eq!(mx.dims(), &kept[..]);
        assert_eq!(mx.to_f32_vec().unwrap(), max, "max over dim {d}");
    }
}

#[test]
fn max_propagates_nan_and_argmax_takes_the_first_best() {
    let x = cpu(vec![1.0, f32::NAN, 3.0, 3.0, -1.0, 2.0, 2.0, 0.0], &[2, 4]);
    let mx = reduce::max(&x, 1, false).unwrap().to_f32_vec().unwrap();
    assert!(mx[0].is_nan(), "{mx:?}");
    assert_eq!(mx[1], 2.0);
    // Row 0: NaN counts as the largest; row 1: 2.0 at 1 and 2, the first wins.
    let am = reduce::argmax(&x, -1).unwrap();
    assert_eq!(am.dtype(), DType::I64);
    assert_eq!(am.to_vec::<i64>().unwrap(), vec![1, 1]);
    // Over dim 0 (a strided column): ties go to row 0.
    let y = cpu(vec![5.0, -0.0, 7.0, 5.0, 0.0, 9.0], &[2, 3]);
    assert_eq!(reduce::argmax(&y, 0).unwrap().to_vec::<i64>().unwrap(), vec![0, 0, 1]);
    let all_neg_inf = cpu(vec![f32::NEG_INFINITY; 3], &[3]);
    assert_eq!(reduce::argmax(&all_neg_inf, 0).unwrap().to_vec::<i64>().unwrap(), vec![0]);
}

#[test]
fn argmax_matches_naive_on_random_input() {
    let dims = [6, 7, 8];
    let x = randn(&dims, 2);
    let xs = x.to_f32_vec().unwrap();
    for d in 0..3 {
        let want = naive(&xs, &dims, d, |c| {
            let mut best = 0;
            for (i, &v) in c.iter().enumerate() {
                if v > c[best] {
                    best = i;
                }
            }
            best as f64
        });
        let got: Vec<f32> = reduce::argmax(&x, d as isize).unwrap().to_vec::<i64>().unwrap().iter().map(|&i| i as f32).collect();
        assert_eq!(got, want, "argmax over dim {d}");
    }
}

#[test]
fn sum_all_is_rank0_and_matches_f64() {
    let x = randn(&[7, 11, 13], 3);
    let want: f64 = x.to_f32_vec().unwrap().iter().map(|&v| v as f64).sum();
    let s = reduce::sum_all(&x).unwrap();
    assert_eq!(s.rank(), 0);
    assert_eq!(s.dtype(), DType::F32);
    assert_close("sum_all", &[s.to_scalar().unwrap()], &[want as f32], 1e-7);
    let empty = Tensor::zeros([0, 4], DType::F32, &Device::Cpu).unwrap();
    assert_eq!(reduce::sum_all(&empty).unwrap().to_scalar().unwrap(), 0.0);
}

#[test]
fn reductions_reject_bad_operands() {
    let x = randn(&[2, 3], 4);
    let err = reduce::sum(&x, 2, false).unwrap_err().to_string();
    assert!(err.contains("dim 2") && err.contains("[2, 3]"), "{err}");
    assert!(reduce::mean(&x, -3, false).is_err());
    let ids = Tensor::from_vec(vec![1i64, 2], [2], &Device::Cpu).unwrap();
    assert!(reduce::sum(&ids, 0, false).is_err());
    assert!(reduce::sum_all(&ids).is_err());
    let empty = Tensor::zeros([2, 0], DType::F32, &Device::Cpu).unwrap();
    let err = reduce::max(&empty, 1, false).unwrap_err().to_string();
    assert!(err.contains("[2, 0]"), "{err}");
    assert!(reduce::argmax(&empty, 1).is_err());
    assert_eq!(reduce::sum(&empty, 1, false).unwrap().to_f32_vec().unwrap(), vec![0.0, 0.0]);
}

/// The top-k of one row by sorting all indices: NaN first, then larger values, then lower
/// indices (-0.0 and 0.0 equal).
fn sorted_topk(row: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (row[a], row[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => a.cmp(&b),
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            _ => y.partial_cmp(&x).unwrap().then(a.cmp(&b)),
        }
    });
    order.truncate(k);
    order
}

fn check_topk(x: &Tensor, k: usize) {
    let n = *x.dims().last().unwrap();
    let xs = x.to_f32_vec().unwrap();
    let (vals, idx) = reduce::topk(x, k).unwrap();
    let mut want_dims = x.dims().to_vec();
    *want_dims.last_mut().unwrap() = k;
    assert_eq!(vals.dims(), &want_dims[..]);
    assert_eq!(idx.dims(), &want_dims[..]);
    let (v, ix) = (vals.to_f32_vec().unwrap(), idx.to_vec::<i64>().unwrap());
    for (r, row) in xs.chunks(n).enumerate() {
        let want = sorted_topk(row, k);
        let got: Vec<usize> = ix[r * k..(r + 1) * k].iter().map(|&i| i as usize).collect();
        assert_eq!(got, want, "row {r}, k {k}");
        for (j, &i) in want.iter().enumerate() {
            assert_eq!(v[r * k + j].to_bits(), row[i].to_bits(), "row {r} value {j}");
        }
    }
}

#[test]
fn topk_matches_a_sort_of_each_row() {
    check_topk(&randn(&[5, 100], 5), 7);
    check_topk(&randn(&[3, 4, 33], 6), 33);
    check_topk(&randn(&[1, 1], 7), 1);
    // Many ties: values from a set of 4.
    let ties: Vec<f32> = (0..8 * 50).map(|i| ((i * 7919) % 4) as f32).collect();
    check_topk(&cpu(ties, &[8, 50]), 20);
}

#[test]
fn topk_orders_nan_inf_and_signed_zeros_like_torch() {
    let row = vec![0.0, f32::NAN, -0.0, f32::INFINITY, 1.0, f32::NAN, -f32::INFINITY, 0.0];
    let x = cpu(row, &[1, 8]);
    let (vals, idx) = reduce::topk(&x, 6).unwrap();
    assert_eq!(idx.to_vec::<i64>().unwrap(), vec![1, 5, 3, 4, 0, 2]);
    let v = vals.to_f32_vec().unwrap();
    assert!(v[0].is_nan() && v[1].is_nan());
    assert_eq!(&v[2..4], &[f32::INFINITY, 1.0]);
    assert_eq!(v[5].to_bits(), (-0.0f32).to_bits(), "values are x's own elements");
    check_topk(&x, 8);
}

#[test]
fn topk_rejects_bad_k() {
    let x = randn(&[2, 5], 8);
    let err = reduce::topk(&x, 6).unwrap_err().to_string();
    assert!(err.contains("k = 6") && err.contains("[2, 5]"), "{err}");
    assert!(reduce::topk(&x, 0).is_err());
    assert!(reduce::topk(&Tensor::scalar(1.0), 1).is_err());
    let ids = Tensor::from_vec(vec![1i64, 2], [2], &Device::Cpu).unwrap();
    assert!(reduce::topk(&ids, 1).is_err());
}
