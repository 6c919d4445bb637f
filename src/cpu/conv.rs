//! conv2d and its backward on the CPU (f32): im2col + GEMM (src/cpu/gemm.rs), the reference
//! for kernels/conv.cu. A 1x1 stride-1 unpadded conv is a plain GEMM per image (no im2col).
//! Otherwise each image is processed in bands of output rows whose im2col buffer (K x cols)
//! stays near `COL_BUDGET` floats, reused from band to band.
//!
//! Forward:  y[n] (Cout x P) = W (Cout x K) @ col[n] (K x P) + b, P = OH * OW.
//! Backward: dW = sum_n dy[n] @ col[n]^T, dx[n] = col2im(W^T @ dy[n]), db = sum of dy over N, P.

use super::gemm::{parallelism, sgemm, View};
use crate::plan::conv::{Conv2dGeom, Conv2dGrads};
use crate::tensor::{Device, Tensor};
use crate::Result;
use rayon::prelude::*;

/// Floats in one band's im2col buffer (4 MiB): large enough for the GEMM to run at speed,
/// small enough to stay in the last-level cache between im2col and GEMM. Measured on 2 Zen 3
/// cores for x [1, 320, 64, 64] * [320, 320, 3, 3]: 1 Mi and 4 Mi floats both match the bare
/// GEMM of the same size (~50 ms); 16 Mi (one band) is 1.8x slower, 256 Ki 1.1x slower.
const COL_BUDGET: usize = 1 << 20;

/// Output rows per band so that K x (rows * OW) stays near `COL_BUDGET`.
fn band_rows(g: &Conv2dGeom) -> usize {
    (COL_BUDGET / (g.k() * g.ow).max(1)).clamp(1, g.oh)
}

/// The output columns `ox` whose input column `ox * sw + kx - pl` lies in [0, W): `lo..hi`.
fn valid_cols(g: &Conv2dGeom, kx: usize) -> (usize, usize) {
    let (sw, pl) = (g.stride.1, g.padding[2]);
    let lo = if pl > kx { (pl - kx).div_ceil(sw) } else { 0 };
    let hi = if g.w + pl > kx { ((g.w - 1 + pl - kx) / sw + 1).min(g.ow) } else { 0 };
    (lo.min(hi), hi)
}

/// The input row of output row `oy` under kernel row `ky`, if inside the image.
fn input_row(g: &Conv2dGeom, oy: usize, ky: usize) -> Option<usize> {
    let iy = (oy * g.stride.0 + ky).checked_sub(g.padding[0])?;
    (iy < g.h).then_some(iy)
}

/// col [K, rows * OW] = the im2col of output rows `row0..row0 + rows` of one image
/// x_img [Cin, H, W]; row k = (ci, ky, kx) in the weight's order.
fn im2col(g: &Conv2dGeom, x_img: &[f32], row0: usize, rows: usize, col: &mut [f32], parallel: bool) {
    let cols = rows * g.ow;
    let (khw, sw, pl) = (g.kh * g.kw, g.stride.1, g.padding[2]);
    let fill = |(r, dst): (usize, &mut [f32])| {
        let (ci, tap) = (r / khw, r % khw);
        let (ky, kx) = (tap / g.kw, tap % g.kw);
        let (lo, hi) = valid_cols(g, kx);
        let plane = &x_img[ci * g.h * g.w..(ci + 1) * g.h * g.w];
        for (j, out) in dst.chunks_exact_mut(g.ow).enumerate() {
            let Some(iy) = input_row(g, row0 + j, ky) else {
                out.fill(0.0);
                continue;
            };
            let src = &plane[iy * g.w..(iy + 1) * g.w];
            out[..lo].fill(0.0);
            out[hi..].fill(0.0);
            if lo < hi {
                let start = lo * sw + kx - pl;
                if sw == 1 {
                    out[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
                } else {
                    for (o, &v) in out[lo..hi].iter_mut().zip(src[start..].iter().step_by(sw)) {
                        *o = v;
                    }
                }
            }
        }
    };
    let col = &mut col[..g.k() * cols];
    if parallel {
        col.par_chunks_mut(cols).enumerate().with_min_len(8).for_each(fill);
    } else {
        col.chunks_mut(cols).enumerate().for_each(fill);
    }
}

/// dx_img [Cin, H, W] += col2im of dcol [K, rows * OW] (output rows `row0..row0 + rows`):
/// the adjoint of `im2col`. Parallel over input channels, which write disjoint planes.
fn col2im_add(g: &Conv2dGeom, dcol: &[f32], row0: usize, rows: usize, dx_img: &mut [f32]) {
    let cols = rows * g.ow;
    let (khw, sw, pl) = (g.kh * g.kw, g.stride.1, g.padding[2]);
    dx_img.par_chunks_mut(g.h * g.w).enumerate().for_each(|(ci, plane)| {
        for tap in 0..khw {
            let (ky, kx) = (tap / g.kw, tap % g.kw);
            let (lo, hi) = valid_cols(g, kx);
            if lo >= hi {
                continue;
            }
            let src_row = &dcol[(ci * khw + tap) * cols..(ci * khw + tap + 1) * cols];
            for (j, src) in src_row.chunks_exact(g.ow).enumerate() {
                let Some(iy) = input_row(g, row0 + j, ky) else { continue };
                let start = lo * sw + kx - pl;
                let dst = &mut plane[iy * g.w + start..(iy + 1) * g.w];
                for (d, &v) in dst.iter_mut().step_by(sw).zip(&src[lo..hi]) {
                    *d += v;
                }
            }
        }
    });
}

/// x: [N, Cin, H, W], weight: [Cout, Cin, kh, kw], bias: [Cout] -> [N, Cout, OH, OW].
pub fn conv2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, g: &Conv2dGeom) -> Result<Tensor> {
    let xv = x.cpu_f32("conv2d")?;
    let wv = weight.cpu_f32("conv2d")?;
    let bv = bias.map(|b| b.cpu_f32("conv2d")).transpose()?;
    let (p, k) = (g.oh * g.ow, g.k());
    let mut out = vec![0.0f32; g.n * g.cout * p];
    let image = |i: usize, y: &mut [f32], col: &mut Vec<f32>, parallel: bool| {
        let x_img = &xv[i * g.cin * g.h * g.w..(i + 1) * g.cin * g.h * g.w];
        if let Some(b) = bv {
            for (row, &v) in y.chunks_exact_mut(p).zip(b) {
                row.fill(v);
            }
        }
        let par = parallelism(parallel);
        if g.is_pointwise() {
            sgemm(g.cout, p, g.cin, y, p, bv.is_some(), View::rows(wv, g.cin), View::rows(x_img, p), par);
            return;
        }
        let band = band_rows(g);
        for row0 in (0..g.oh).step_by(band) {
            let rows = band.min(g.oh - row0);
            let cols = rows * g.ow;
            col.resize(k * cols, 0.0);
            im2col(g, x_img, row0, rows, col, parallel);
            let dst = &mut y[row0 * g.ow..];
            sgemm(g.cout, cols, k, dst, p, bv.is_some(), View::rows(wv, k), View::rows(&col[..k * cols], cols), par);
        }
    };
    let per_image = (g.cout * p).max(1);
    if g.n >= rayon::current_num_threads() {
        // Enough images to keep every thread busy: one image per task, single-threaded GEMMs.
        out.par_chunks_mut(per_image).enumerate().for_each_init(Vec::new, |col, (i, y)| image(i, y, col, false));
    } else {
        let mut col = Vec::new();
        for (i, y) in out.chunks_mut(per_image).enumerate() {
            image(i, y, &mut col, true);
        }
    }
    Tensor::from_vec(out, g.out_dims().to_vec(), &Device::Cpu)
}

/// dy: [N, Cout, OH, OW], x: [N, Cin, H, W], weight: [Cout, Cin, kh, kw] -> dx, dW, db.
pub fn conv2d_backward(dy: &Tensor, x: &Tensor, weight: &Tensor, g: &Conv2dGeom, need_dx: bool, has_bias: bool) -> Result<Conv2dGrads> {
    let dyv = dy.cpu_f32("conv2d_backward")?;
    let xv = x.cpu_f32("conv2d_backward")?;
    let wv = weight.cpu_f32("conv2d_backward")?;
    let (p, k, hw) = (g.oh * g.ow, g.k(), g.h * g.w);
    let par = parallelism(true);
    let mut dw = vec![0.0f32; g.cout * k];
    let mut dx = if need_dx { vec![0.0f32; g.n * g.cin * hw] } else { Vec::new() };
    let mut col = Vec::new();
    let band = band_rows(g);
    for i in 0..g.n {
        let x_img = &xv[i * g.cin * hw..(i + 1) * g.cin * hw];
        let dy_img = &dyv[i * g.cout * p..(i + 1) * g.cout * p];
        if g.is_pointwise() {
            // dW += dy[i] @ x[i]^T; dx[i] = W^T @ dy[i].
            sgemm(g.cout, g.cin, p, &mut dw, g.cin, true, View::rows(dy_img, p), View::cols(x_img, p), par);
            if need_dx {
                let dx_img = &mut dx[i * g.cin * hw..(i + 1) * g.cin * hw];
                sgemm(g.cin, p, g.cout, dx_img, p, false, View::cols(wv, g.cin), View::rows(dy_img, p), par);
            }
            continue;
        }
        for row0 in (0..g.oh).step_by(band) {
            let rows = band.min(g.oh - row0);
            let cols = rows * g.ow;
            let dy_band = View { data: &dy_img[row0 * g.ow..], rs: p, cs: 1 };
            col.resize(k * cols, 0.0);
            im2col(g, x_img, row0, rows, &mut col, true);
            // dW [Cout, K] += dy_band [Cout, cols] @ col^T [cols, K]
            sgemm(g.cout, k, cols, &mut dw, k, true, dy_band, View::cols(&col[..k * cols], cols), par);
            if need_dx {
                // dcol [K, cols] = W^T [K, Cout] @ dy_band [Cout, cols], reusing the buffer.
                sgemm(k, cols, g.cout, &mut col, cols, false, View::cols(wv, k), dy_band, par);
                col2im_add(g, &col[..k * cols], row0, rows, &mut dx[i * g.cin * hw..(i + 1) * g.cin * hw]);
            }
        }
    }
    let dbias = if has_bias {
        let sums: Vec<f32> = (0..g.cout)
            .into_par_iter()
            .map(|c| {
                (0..g.n).map(|i| dyv[(i * g.cout + c) * p..(i * g.cout + c + 1) * p].iter().map(|&v| v as f64).sum::<f64>()).sum::<f64>()
                    as f32
            })
            .collect();
        Some(Tensor::from_vec(sums, [g.cout], &Device::Cpu)?)
    } else {
        None
    };
    Ok(Conv2dGrads {
        dx: if need_dx { Some(Tensor::from_vec(dx, [g.n, g.cin, g.h, g.w], &Device::Cpu)?) } else { None },
        dweight: Tensor::from_vec(dw, [g.cout, g.cin, g.kh, g.kw], &Device::Cpu)?,
        dbias,
    })
}
