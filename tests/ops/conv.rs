use crate::common::*;
use revelio::ops::conv::{conv2d, conv2d_backward, Conv2dParams};
use revelio::Tensor;

/// One convolution to test: x [n, cin, h, w], weight [cout, cin, kh, kw].
#[derive(Debug, Clone, Copy)]
struct Cfg {
    n: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    kh: usize,
    kw: usize,
    stride: (usize, usize),
    pad: [usize; 4],
}

impl Cfg {
    fn params(&self) -> Conv2dParams {
        Conv2dParams { stride: self.stride, padding: self.pad }
    }
    fn out_hw(&self) -> (usize, usize) {
        let [pt, pb, pl, pr] = self.pad;
        ((self.h + pt + pb - self.kh) / self.stride.0 + 1, (self.w + pl + pr - self.kw) / self.stride.1 + 1)
    }
    fn x_dims(&self) -> [usize; 4] {
        [self.n, self.cin, self.h, self.w]
    }
    fn w_dims(&self) -> [usize; 4] {
        [self.cout, self.cin, self.kh, self.kw]
    }
    fn y_dims(&self) -> [usize; 4] {
        let (oh, ow) = self.out_hw();
        [self.n, self.cout, oh, ow]
    }
}

#[allow(clippy::too_many_arguments)]
const fn cfg(n: usize, cin: usize, h: usize, w: usize, cout: usize, kh: usize, kw: usize, stride: (usize, usize), pad: [usize; 4]) -> Cfg {
    Cfg { n, cin, h, w, cout, kh, kw, stride, pad }
}

/// Kernels 1x1, 2x3, 3x3, 4x4; strides 1, 2 and mixed; symmetric, asymmetric and VAE-style
/// (0, 1, 0, 1) padding; channel counts and sizes that are multiples of nothing.
const CONFIGS: [Cfg; 9] = [
    cfg(2, 3, 7, 9, 5, 3, 3, (1, 1), [1, 1, 1, 1]),
    cfg(1, 4, 8, 8, 6, 1, 1, (1, 1), [0, 0, 0, 0]),
    cfg(3, 5, 9, 6, 7, 4, 4, (2, 2), [1, 2, 0, 3]),
    cfg(2, 6, 10, 11, 3, 3, 3, (2, 2), [0, 1, 0, 1]),
    cfg(1, 2, 5, 5, 3, 1, 1, (2, 2), [0, 0, 0, 0]),
    cfg(2, 3, 6, 5, 4, 2, 3, (1, 2), [2, 0, 1, 1]),
    cfg(1, 7, 13, 4, 9, 3, 3, (1, 1), [1, 1, 1, 1]),
    cfg(3, 2, 4, 4, 2, 4, 4, (1, 1), [0, 0, 0, 0]),
    cfg(2, 5, 6, 7, 3, 1, 1, (1, 1), [1, 0, 2, 1]),
];

/// y = conv(x, w) + b in f64 by the definition: six nested loops, nothing shared with src/.
fn naive_conv(c: &Cfg, x: &[f64], w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
    let (oh, ow) = c.out_hw();
    let (sh, sw) = c.stride;
    let mut y = vec![0.0; c.n * c.cout * oh * ow];
    for n in 0..c.n {
        for co in 0..c.cout {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = b.map_or(0.0, |b| b[co]);
                    for ci in 0..c.cin {
                        for ky in 0..c.kh {
                            for kx in 0..c.kw {
                                let iy = (oy * sh + ky) as isize - c.pad[0] as isize;
                                let ix = (ox * sw + kx) as isize - c.pad[2] as isize;
                                if iy < 0 || ix < 0 || iy >= c.h as isize || ix >= c.w as isize {
                                    continue;
                                }
                                let xi = ((n * c.cin + ci) * c.h + iy as usize) * c.w + ix as usize;
                                let wi = ((co * c.cin + ci) * c.kh + ky) * c.kw + kx;
                                acc += x[xi] * w[wi];
                            }
                        }
                    }
                    y[((n * c.cout + co) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    y
}

fn inputs(c: &Cfg, seed: u64) -> (Tensor, Tensor, Tensor) {
    (randn(&c.x_dims(), seed), randn(&c.w_dims(), seed + 1), randn(&[c.cout], seed + 2))
}

fn vals(t: &Tensor) -> Vec<f64> {
    to_f64(&t.to_f32_vec().unwrap())
}

#[test]
fn conv2d_matches_naive_f64() {
    for (i, c) in CONFIGS.iter().enumerate() {
        let (x, w, b) = inputs(c, 10 * i as u64);
        for bias in [true, false] {
            let y = conv2d(&x, &w, bias.then_some(&b), &c.params()).unwrap();
            assert_eq!(y.dims(), c.y_dims(), "{c:?}");
            let bv = vals(&b);
            let want = naive_conv(c, &vals(&x), &vals(&w), bias.then_some(bv.as_slice()));
            assert_close(&format!("conv2d {c:?} bias={bias}"), &y.to_f32_vec().unwrap(), &f64_to_f32(&want), 1e-6);
        }
    }
}

/// Large enough that the CPU im2col runs in several bands of output rows (K * OH * OW is
/// above the band budget), in both the one-image and the parallel-over-images paths.
#[test]
fn conv2d_in_bands_matches_naive_f64() {
    for c in [cfg(1, 64, 128, 130, 5, 3, 3, (1, 1), [1, 1, 1, 1]), cfg(2, 80, 130, 128, 3, 3, 3, (2, 1), [0, 1, 2, 1])] {
        let (x, w, b) = inputs(&c, 77);
        let y = conv2d(&x, &w, Some(&b), &c.params()).unwrap();
        let want = naive_conv(&c, &vals(&x), &vals(&w), Some(&vals(&b)));
        assert_close(&format!("conv2d {c:?}"), &y.to_f32_vec().unwrap(), &f64_to_f32(&want), 1e-6);
    }
}

/// dx, dW, db of loss = sum(conv(x, w, b) * r) by central differences of the naive f64 conv.
#[test]
fn conv2d_backward_matches_finite_differences() {
    for (i, c) in CONFIGS.iter().enumerate() {
        let c = Cfg { n: c.n.min(2), ..*c };
        let (x, w, b) = inputs(&c, 100 + 10 * i as u64);
        let r = randn(&c.y_dims(), 200 + i as u64);
        let (xv, wv, bv, rv) = (vals(&x), vals(&w), vals(&b), vals(&r));
        let loss = |y: Vec<f64>| y.iter().zip(&rv).map(|(a, b)| a * b).sum::<f64>();
        let want_dx = fd_grad(&|xs| loss(naive_conv(&c, xs, &wv, Some(&bv))), &xv, 1e-6);
        let want_dw = fd_grad(&|ws| loss(naive_conv(&c, &xv, ws, Some(&bv))), &wv, 1e-6);
        let want_db = fd_grad(&|bs| loss(naive_conv(&c, &xv, &wv, Some(bs))), &bv, 1e-6);
        let g = conv2d_backward(&r, &x, &w, &c.params(), true, true).unwrap();
        let what = format!("conv2d_backward {c:?}");
        assert_close(&format!("{what} dx"), &g.dx.unwrap().to_f32_vec().unwrap(), &f64_to_f32(&want_dx), 1e-5);
        assert_close(&format!("{what} dW"), &g.dweight.to_f32_vec().unwrap(), &f64_to_f32(&want_dw), 1e-5);
        assert_close(&format!("{what} db"), &g.dbias.unwrap().to_f32_vec().unwrap(), &f64_to_f32(&want_db), 1e-5);
        let g = conv2d_backward(&r, &x, &w, &c.params(), false, false).unwrap();
        assert!(g.dx.is_none() && g.dbias.is_none());
        assert_close(&format!("{what} dW alone"), &g.dweight.to_f32_vec().unwrap(), &f64_to_f32(&want_dw), 1e-5);
    }
}

/// The banded backward (several im2col bands per image) against the same finite differences,
/// taken on a sample of the inputs (every element would take too long).
#[test]
fn conv2d_backward_in_bands_matches_finite_differences() {
    let c = cfg(2, 40, 128, 130, 2, 3, 3, (1, 1), [1, 0, 1, 2]);
    let (x, w, b) = inputs(&c, 300);
    let r = randn(&c.y_dims(), 301);
    let (xv, wv, bv, rv) = (vals(&x), vals(&w), vals(&b), vals(&r));
    let g = conv2d_backward(&r, &x, &w, &c.params(), true, true).unwrap();
    let (dx, dw) = (g.dx.unwrap().to_f32_vec().unwrap(), g.dweight.to_f32_vec().unwrap());
    let loss = |xs: &[f64], ws: &[f64]| naive_conv(&c, xs, ws, Some(&bv)).iter().zip(&rv).map(|(a, b)| a * b).sum::<f64>();
    // The loss is linear in x and in w, so one central difference per element is exact up to
    // rounding; sample elements across both batch images, all channels and the band edges.
    let eps = 1e-3;
    for idx in (0..xv.len()).step_by(xv.len() / 7 + 1).chain([xv.len() - 1, 88 * 130 + 5, 87 * 130 + 129]) {
        let (mut p, mut m) = (xv.clone(), xv.clone());
        p[idx] += eps;
        m[idx] -= eps;
        let want = (loss(&p, &wv) - loss(&m, &wv)) / (2.0 * eps);
        assert!((dx[idx] as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()), "dx[{idx}] = {} vs {want}", dx[idx]);
    }
    for idx in [0, 17, 359, 360, wv.len() - 1] {
        let (mut p, mut m) = (wv.clone(), wv.clone());
        p[idx] += eps;
        m[idx] -= eps;
        let want = (loss(&xv, &p) - loss(&xv, &m)) / (2.0 * eps);
        assert!((dw[idx] as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()), "dW[{idx}] = {} vs {want}", dw[idx]);
    }
}

#[test]
fn conv2d_rejects_bad_operands() {
    let x = randn(&[2, 3, 8, 8], 1);
    let w = randn(&[4, 3, 3, 3], 2);
    let p = Conv2dParams::new(1, 1);
    let err = conv2d(&x, &randn(&[4, 5, 3, 3], 3), None, &p).unwrap_err().to_string();
    assert!(err.contains("[2, 3, 8, 8]") && err.contains("[4, 5, 3, 3]"), "{err}");
    let err = conv2d(&randn(&[1, 3, 2, 2], 4), &w, None, &Conv2dParams::new(1, 0)).unwrap_err().to_string();
    assert!(err.contains("does not fit") && err.contains("[1, 3, 2, 2]"), "{err}");
    let err = conv2d(&x, &w, Some(&randn(&[3], 5)), &p).unwrap_err().to_string();
    assert!(err.contains("bias [3]") && err.contains("[4, 3, 3, 3]"), "{err}");
    let err = conv2d(&randn(&[3, 8, 8], 6), &w, None, &p).unwrap_err().to_string();
    assert!(err.contains("rank-4") && err.contains("[3, 8, 8]"), "{err}");
    assert!(conv2d(&x, &w, None, &Conv2dParams::new(0, 1)).is_err());
    let half = revelio::ops::to_dtype(&x, revelio::DType::BF16).unwrap();
    assert!(conv2d(&half, &w, None, &p).is_err());
    let err = conv2d_backward(&randn(&[2, 4, 7, 8], 7), &x, &w, &p, true, true).unwrap_err().to_string();
    assert!(err.contains("dy [2, 4, 7, 8]") && err.contains("[2, 4, 8, 8]"), "{err}");
}
