use crate::common::*;
use revelio::ops::pool;
use revelio::{DType, Device, Tensor};

/// torch's AdaptiveAvgPool2d bin of output i: [floor(i*in/out), ceil((i+1)*in/out)).
fn bin(i: usize, input: usize, output: usize) -> (usize, usize) {
    let start = (i * input) as f64 / output as f64;
    let end = ((i + 1) * input) as f64 / output as f64;
    (start.floor() as usize, end.ceil() as usize)
}

/// Naive f64 adaptive average pooling of x [n, c, h, w] to [n, c, oh, ow].
fn pool64(x: &[f64], (n, c, h, w): (usize, usize, usize, usize), (oh, ow): (usize, usize)) -> Vec<f64> {
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for p in 0..n * c {
        for i in 0..oh {
            let (y0, y1) = bin(i, h, oh);
            for j in 0..ow {
                let (x0, x1) = bin(j, w, ow);
                let mut s = 0.0;
                for y in y0..y1 {
                    for xx in x0..x1 {
                        s += x[(p * h + y) * w + xx];
                    }
                }
                out.push(s / ((y1 - y0) * (x1 - x0)) as f64);
            }
        }
    }
    out
}

#[test]
fn adaptive_avg_pool2d_hand_values() {
    // 4x4 -> 2x2: plain 2x2 blocks.
    let x = cpu((0..16).map(|v| v as f32).collect(), &[1, 1, 4, 4]);
    let y = pool::adaptive_avg_pool2d(&x, (2, 2)).unwrap();
    assert_eq!(y.dims(), &[1, 1, 2, 2]);
    assert_eq!(y.to_f32_vec().unwrap(), vec![2.5, 4.5, 10.5, 12.5]);
    // 1x5 -> 1x3: bins [0, 2), [1, 4), [3, 5) overlap.
    let x = cpu(vec![1.0, 2.0, 3.0, 4.0, 5.0], &[1, 1, 1, 5]);
    let y = pool::adaptive_avg_pool2d(&x, (1, 3)).unwrap().to_f32_vec().unwrap();
    assert_close("overlapping bins", &y, &[1.5, 3.0, 4.5], 1e-7);
}

#[test]
fn adaptive_avg_pool2d_matches_naive() {
    let dims = (2, 3, 7, 5);
    let x = randn(&[2, 3, 7, 5], 1);
    let xv = to_f64(&x.to_f32_vec().unwrap());
    for out in [(3, 2), (7, 5), (1, 1), (4, 4), (9, 8)] {
        let y = pool::adaptive_avg_pool2d(&x, out).unwrap();
        assert_eq!(y.dims(), &[2, 3, out.0, out.1]);
        assert_close(&format!("pool to {out:?}"), &y.to_f32_vec().unwrap(), &f64_to_f32(&pool64(&xv, dims, out)), 1e-6);
    }
}

#[test]
fn adaptive_avg_pool2d_backward_matches_finite_differences() {
    let dims = (2, 2, 7, 5);
    let x = to_f64(&randn(&[2, 2, 7, 5], 2).to_f32_vec().unwrap());
    for out in [(3, 2), (4, 4), (9, 6), (1, 1)] {
        let r = randn(&[2, 2, out.0, out.1], 3);
        let rv = to_f64(&r.to_f32_vec().unwrap());
        let loss = |xs: &[f64]| pool64(xs, dims, out).iter().zip(&rv).map(|(a, b)| a * b).sum::<f64>();
        let want = fd_grad(&loss, &x, 1e-6);
        let dx = pool::adaptive_avg_pool2d_backward(&r, (7, 5)).unwrap();
        assert_eq!(dx.dims(), &[2, 2, 7, 5]);
        assert_close(&format!("pool backward {out:?}"), &dx.to_f32_vec().unwrap(), &f64_to_f32(&want), 1e-5);
    }
}

#[test]
fn global_avg_pool_is_the_spatial_mean() {
    let x = cpu((0..12).map(|v| v as f32).collect(), &[1, 3, 2, 2]);
    let y = pool::global_avg_pool(&x).unwrap();
    assert_eq!(y.dims(), &[1, 3]);
    assert_eq!(y.to_f32_vec().unwrap(), vec![1.5, 5.5, 9.5]);
    let x = randn(&[2, 4, 5, 3], 4);
    let xv = to_f64(&x.to_f32_vec().unwrap());
    let want = pool64(&xv, (2, 4, 5, 3), (1, 1));
    assert_close("global", &pool::global_avg_pool(&x).unwrap().to_f32_vec().unwrap(), &f64_to_f32(&want), 1e-6);
}

#[test]
fn pooling_rejects_bad_operands() {
    let x = randn(&[1, 2, 4, 4], 5);
    let err = pool::adaptive_avg_pool2d(&x, (0, 2)).unwrap_err().to_string();
    assert!(err.contains("[1, 2, 4, 4]"), "{err}");
    let err = pool::adaptive_avg_pool2d(&randn(&[2, 4, 4], 1), (2, 2)).unwrap_err().to_string();
    assert!(err.contains("rank-4") && err.contains("[2, 4, 4]"), "{err}");
    assert!(pool::adaptive_avg_pool2d_backward(&x, (0, 3)).is_err());
    assert!(pool::global_avg_pool(&Tensor::zeros([1, 2, 0, 3], DType::F32, &Device::Cpu).unwrap()).is_err());
    assert!(pool::global_avg_pool(&revelio::ops::to_dtype(&x, DType::BF16).unwrap()).is_err(), "CPU takes f32");
}
