//! Pooling on the CPU (f32; sums in f64): adaptive average pooling forward (each output the
//! mean of its bin) and backward (each dy element scattered evenly over its bin). The
//! reference for kernels/pool.cu, whose backward gathers instead.

use crate::plan::pool::{adaptive_bin, PoolPlan};
use crate::tensor::{Device, Tensor};
use crate::Result;
use rayon::prelude::*;

pub fn adaptive_avg_pool2d(x: &Tensor, p: &PoolPlan) -> Result<Tensor> {
    let xs = x.cpu_f32("adaptive_avg_pool2d")?;
    let mut out = vec![0.0f32; p.n * p.c * p.oh * p.ow];
    out.par_chunks_mut(p.oh * p.ow).zip(xs.par_chunks(p.h * p.w)).for_each(|(o, plane)| {
        for i in 0..p.oh {
            let (y0, y1) = adaptive_bin(i, p.h, p.oh);
            for j in 0..p.ow {
                let (x0, x1) = adaptive_bin(j, p.w, p.ow);
                let sum: f64 = (y0..y1).flat_map(|y| (x0..x1).map(move |x| plane[y * p.w + x] as f64)).sum();
                o[i * p.ow + j] = (sum / ((y1 - y0) * (x1 - x0)) as f64) as f32;
            }
        }
    });
    Tensor::from_vec(out, [p.n, p.c, p.oh, p.ow], &Device::Cpu)
}

pub fn adaptive_avg_pool2d_backward(dy: &Tensor, p: &PoolPlan) -> Result<Tensor> {
    let dys = dy.cpu_f32("adaptive_avg_pool2d_backward")?;
    let mut dx = vec![0.0f32; p.n * p.c * p.h * p.w];
    dx.par_chunks_mut(p.h * p.w).zip(dys.par_chunks(p.oh * p.ow)).for_each(|(plane, g)| {
        let mut acc = vec![0.0f64; p.h * p.w];
        for i in 0..p.oh {
            let (y0, y1) = adaptive_bin(i, p.h, p.oh);
            for j in 0..p.ow {
                let (x0, x1) = adaptive_bin(j, p.w, p.ow);
                let share = g[i * p.ow + j] as f64 / ((y1 - y0) * (x1 - x0)) as f64;
                for y in y0..y1 {
                    for x in x0..x1 {
                        acc[y * p.w + x] += share;
                    }
                }
            }
        }
        for (d, a) in plane.iter_mut().zip(acc) {
            *d = a as f32;
        }
    });
    Tensor::from_vec(dx, [p.n, p.c, p.h, p.w], &Device::Cpu)
}
