use crate::common::*;
use revelio::ops::norm::{batch_norm_backward, batch_norm_eval, batch_norm_train, group_norm, layer_norm, BatchNormState};
use revelio::{DType, Device, Tensor};

fn silu64(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

/// (mean, biased variance) in f64.
fn mean_var64(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (mean, v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64)
}

/// torch.nn.GroupNorm (+ SiLU) in f64, written independently of src/cpu.
fn group_norm64(x: &[f64], dims: &[usize], groups: usize, w: Option<&[f64]>, b: Option<&[f64]>, eps: f64, silu: bool) -> Vec<f64> {
    let (n, c, s) = (dims[0], dims[1], dims[2..].iter().product::<usize>());
    let cpg = c / groups;
    let mut y = vec![0.0; x.len()];
    for ni in 0..n {
        for g in 0..groups {
            let idx: Vec<(usize, usize)> = (g * cpg..(g + 1) * cpg).flat_map(|ci| (0..s).map(move |si| (ci, (ni * c + ci) * s + si))).collect();
            let vals: Vec<f64> = idx.iter().map(|&(_, i)| x[i]).collect();
            let (mean, var) = mean_var64(&vals);
            for &(ci, i) in &idx {
                let v = (x[i] - mean) / (var + eps).sqrt() * w.map_or(1.0, |w| w[ci]) + b.map_or(0.0, |b| b[ci]);
                y[i] = if silu { silu64(v) } else { v };
            }
        }
    }
    y
}

/// torch.nn.LayerNorm over the last dim, in f64.
fn layer_norm64(x: &[f64], c: usize, w: Option<&[f64]>, b: Option<&[f64]>, eps: f64) -> Vec<f64> {
    x.chunks(c)
        .flat_map(|row| {
            let (mean, var) = mean_var64(row);
            row.iter()
                .enumerate()
                .map(move |(j, v)| (v - mean) / (var + eps).sqrt() * w.map_or(1.0, |w| w[j]) + b.map_or(0.0, |b| b[j]))
                .collect::<Vec<f64>>()
        })
        .collect()
}

/// Train-mode batch norm in f64: (y, per-channel mean, per-channel biased variance).
fn batch_norm64(x: &[f64], dims: &[usize], w: Option<&[f64]>, b: Option<&[f64]>, eps: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, c, s) = (dims[0], dims[1], dims[2..].iter().product::<usize>());
    let mut y = vec![0.0; x.len()];
    let (mut means, mut vars) = (vec![0.0; c], vec![0.0; c]);
    for ci in 0..c {
        let idx: Vec<usize> = (0..n).flat_map(|ni| (0..s).map(move |si| (ni * c + ci) * s + si)).collect();
        let vals: Vec<f64> = idx.iter().map(|&i| x[i]).collect();
        let (mean, var) = mean_var64(&vals);
        (means[ci], vars[ci]) = (mean, var);
        for &i in &idx {
            y[i] = (x[i] - mean) / (var + eps).sqrt() * w.map_or(1.0, |w| w[ci]) + b.map_or(0.0, |b| b[ci]);
        }
    }
    (y, means, vars)
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_f32_vec().unwrap()
}

// ---------------------------------------------------------------- group norm

/// x = [1, 2 | 3, 5] in two groups of two channels: means 1.5 and 4, variances 0.25 and 1, so
/// (eps 0) both normalise to [-1, 1]; then weight [1, 2, 3, 4], bias [0, 0, 1, 1].
#[test]
fn group_norm_hand_values() {
    let x = cpu(vec![1.0, 2.0, 3.0, 5.0], &[1, 4, 1]);
    let w = cpu(vec![1.0, 2.0, 3.0, 4.0], &[4]);
    let b = cpu(vec![0.0, 0.0, 1.0, 1.0], &[4]);
    let y = group_norm(&x, 2, Some(&w), Some(&b), 0.0, false).unwrap();
    assert_eq!(y.dims(), &[1, 4, 1]);
    assert_close("group_norm", &f32s(&y), &[-1.0, 2.0, -2.0, 5.0], 1e-7);
    // SiLU of those, from Python's math.exp.
    let y = group_norm(&x, 2, Some(&w), Some(&b), 0.0, true).unwrap();
    assert_close("group_norm+silu", &f32s(&y), &[-0.268_941_42, 1.761_594_2, -0.238_405_84, 4.966_535_7], 1e-7);
}

#[test]
fn group_norm_matches_f64() {
    let cases: [(&[usize], usize); 5] = [(&[2, 6, 5, 3], 3), (&[3, 8], 4), (&[1, 4, 7], 1), (&[2, 12, 2, 3, 2], 12), (&[1, 32, 9, 9], 32)];
    for (i, &(dims, groups)) in cases.iter().enumerate() {
        let seed = 10 * i as u64;
        let x = randn(dims, seed);
        let c = dims[1];
        let w = randn(&[c], seed + 1);
        let b = randn(&[c], seed + 2);
        let (xv, wv, bv) = (to_f64(&f32s(&x)), to_f64(&f32s(&w)), to_f64(&f32s(&b)));
        for silu in [false, true] {
            for (wo, bo) in [(Some(&w), Some(&b)), (None, None), (Some(&w), None)] {
                let y = group_norm(&x, groups, wo, bo, 1e-5, silu).unwrap();
                let want = group_norm64(&xv, dims, groups, wo.map(|_| &wv[..]), bo.map(|_| &bv[..]), 1e-5, silu);
                let what = format!("group_norm {dims:?} g{groups} silu={silu} w={} b={}", wo.is_some(), bo.is_some());
                assert_close(&what, &f32s(&y), &f64_to_f32(&want), 1e-6);
            }
        }
    }
}

#[test]
fn group_norm_rejects_bad_operands() {
    let x = randn(&[2, 6, 4], 1);
    let err = group_norm(&x, 4, None, None, 1e-5, false).unwrap_err().to_string();
    assert!(err.contains("[2, 6, 4]") && err.contains("4 groups"), "{err}");
    assert!(group_norm(&x, 0, None, None, 1e-5, false).is_err(), "zero groups");
    let w5 = randn(&[5], 2);
    let err = group_norm(&x, 3, Some(&w5), None, 1e-5, false).unwrap_err().to_string();
    assert!(err.contains("weight") && err.contains("[5]") && err.contains("[2, 6, 4]"), "{err}");
    let err = group_norm(&x, 3, None, Some(&w5), 1e-5, false).unwrap_err().to_string();
    assert!(err.contains("bias") && err.contains("[5]"), "{err}");
    let err = group_norm(&randn(&[6], 3), 3, None, None, 1e-5, false).unwrap_err().to_string();
    assert!(err.contains("rank >= 2") && err.contains("[6]"), "{err}");
    let half = revelio::ops::to_dtype(&x, DType::BF16).unwrap();
    assert!(group_norm(&half, 3, None, None, 1e-5, false).is_err(), "bf16 on the CPU");
    assert!(group_norm(&x, 3, None, None, -1.0, false).is_err(), "negative eps");
}

// ---------------------------------------------------------------- layer norm

/// Rows [1, 2, 3] (mean 2, variance 2/3) and [0, 0, 3] (mean 1, variance 2), eps 0, weight
/// [1, 2, 0.5], bias [0, 1, -1]; values from Python.
#[test]
fn layer_norm_hand_values() {
    let x = cpu(vec![1.0, 2.0, 3.0, 0.0, 0.0, 3.0], &[2, 3]);
    let w = cpu(vec![1.0, 2.0, 0.5], &[3]);
    let b = cpu(vec![0.0, 1.0, -1.0], &[3]);
    let y = layer_norm(&x, Some(&w), Some(&b), 0.0).unwrap();
    let want = [-1.224_744_9, 1.0, -0.387_627_56, -0.707_106_77, -0.414_213_56, -0.292_893_22];
    assert_close("layer_norm", &f32s(&y), &want, 1e-7);
}

#[test]
fn layer_norm_matches_f64() {
    for (i, dims) in [&[4, 320][..], &[2, 3, 77], &[5, 1], &[1, 2, 3, 1152]].iter().enumerate() {
        let x = randn(dims, 40 + i as u64);
        let c = *dims.last().unwrap();
        let w = randn(&[c], 50 + i as u64);
        let b = randn(&[c], 60 + i as u64);
        let (xv, wv, bv) = (to_f64(&f32s(&x)), to_f64(&f32s(&w)), to_f64(&f32s(&b)));
        let y = layer_norm(&x, Some(&w), Some(&b), 1e-5).unwrap();
        assert_eq!(y.dims(), *dims);
        assert_close(&format!("layer_norm {dims:?}"), &f32s(&y), &f64_to_f32(&layer_norm64(&xv, c, Some(&wv), Some(&bv), 1e-5)), 1e-6);
        let y = layer_norm(&x, None, None, 1e-6).unwrap();
        assert_close(&format!("layer_norm {dims:?} no affine"), &f32s(&y), &f64_to_f32(&layer_norm64(&xv, c, None, None, 1e-6)), 1e-6);
    }
}

#[test]
fn layer_norm_rejects_bad_operands() {
    let x = randn(&[2, 8], 1);
    let err = layer_norm(&x, Some(&randn(&[7], 2)), None, 1e-5).unwrap_err().to_string();
    assert!(err.contains("[7]") && err.contains("[2, 8]"), "{err}");
    assert!(layer_norm(&Tensor::scalar(1.0), None, None, 1e-5).is_err(), "rank 0");
    let ids = Tensor::from_vec(vec![1i64; 8], [2, 4], &Device::Cpu).unwrap();
    assert!(layer_norm(&ids, None, None, 1e-5).is_err(), "int input");
}

// ---------------------------------------------------------------- batch norm

/// x [2, 2, 1, 2]: channel 0 holds 1, 2 (n=0) and 3, 4 (n=1): mean 2.5, biased variance 1.25,
/// unbiased 5/3; channel 1 holds 0, 0, 2, -2: mean 0, biased variance 2, unbiased 8/3.
fn bn_example() -> Tensor {
    cpu(vec![1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 2.0, -2.0], &[2, 2, 1, 2])
}

#[test]
fn batch_norm_running_stats_hand_values() {
    let x = bn_example();
    let mut state = BatchNormState::new(2, &Device::Cpu).unwrap();
    assert_eq!(f32s(&state.running_mean), vec![0.0, 0.0]);
    assert_eq!(f32s(&state.running_var), vec![1.0, 1.0]);
    let (y, cache) = batch_norm_train(&x, None, None, Some(&mut state), 0.1, 0.0).unwrap();
    let (r125, r2) = (1.25f64.sqrt(), 2f64.sqrt());
    let want = [-1.5 / r125, -0.5 / r125, 0.0, 0.0, 0.5 / r125, 1.5 / r125, 2.0 / r2, -2.0 / r2];
    assert_close("batch_norm y", &f32s(&y), &f64_to_f32(&want), 1e-7);
    assert_close("cache.mean", &f32s(&cache.mean), &[2.5, 0.0], 1e-7);
    assert_close("cache.rstd", &f32s(&cache.rstd), &[(1.0 / r125) as f32, (1.0 / r2) as f32], 1e-7);
    // running = 0.9 * running + 0.1 * batch, with the unbiased variance.
    assert_close("running_mean 1", &f32s(&state.running_mean), &[0.25, 0.0], 1e-7);
    assert_close("running_var 1", &f32s(&state.running_var), &[0.9 + 0.1 * 5.0 / 3.0, 0.9 + 0.1 * 8.0 / 3.0], 1e-7);
    // Eval mode normalises with the running stats: (x - 0.25) / sqrt(1.0666..) and x / sqrt(1.1666..).
    let y = batch_norm_eval(&x, None, None, &state, 0.0).unwrap();
    let (s0, s1) = ((0.9f64 + 0.1 * 5.0 / 3.0).sqrt(), (0.9f64 + 0.1 * 8.0 / 3.0).sqrt());
    let want = [0.75 / s0, 1.75 / s0, 0.0, 0.0, 2.75 / s0, 3.75 / s0, 2.0 / s1, -2.0 / s1];
    assert_close("batch_norm_eval", &f32s(&y), &f64_to_f32(&want), 1e-7);
    // A second step moves the stats again.
    batch_norm_train(&x, None, None, Some(&mut state), 0.1, 0.0).unwrap();
    assert_close("running_mean 2", &f32s(&state.running_mean), &[0.9 * 0.25 + 0.25, 0.0], 1e-7);
    let rv1 = [0.9 + 0.1 * 5.0 / 3.0, 0.9 + 0.1 * 8.0 / 3.0];
    assert_close("running_var 2", &f32s(&state.running_var), &[0.9 * rv1[0] + 0.1 * 5.0 / 3.0, 0.9 * rv1[1] + 0.1 * 8.0 / 3.0], 1e-7);
    // Without a state nothing is tracked, and the output is the same.
    let (y2, _) = batch_norm_train(&x, None, None, None, 0.1, 0.0).unwrap();
    assert_close("batch_norm y (no state)", &f32s(&y2), &f64_to_f32(&[-1.5 / r125, -0.5 / r125, 0.0, 0.0, 0.5 / r125, 1.5 / r125, 2.0 / r2, -2.0 / r2]), 1e-7);
}

#[test]
fn batch_norm_matches_f64() {
    for (i, dims) in [&[4, 3, 5, 6][..], &[7, 5], &[2, 4, 3, 2, 2], &[16, 8, 8, 8]].iter().enumerate() {
        let x = randn(dims, 70 + i as u64);
        let c = dims[1];
        let w = randn(&[c], 80 + i as u64);
        let b = randn(&[c], 90 + i as u64);
        let (xv, wv, bv) = (to_f64(&f32s(&x)), to_f64(&f32s(&w)), to_f64(&f32s(&b)));
        let (want, means, vars) = batch_norm64(&xv, dims, Some(&wv), Some(&bv), 1e-5);
        let mut state = BatchNormState::new(c, &Device::Cpu).unwrap();
        let (y, cache) = batch_norm_train(&x, Some(&w), Some(&b), Some(&mut state), 0.3, 1e-5).unwrap();
        assert_close(&format!("batch_norm {dims:?}"), &f32s(&y), &f64_to_f32(&want), 1e-6);
        assert_close("cache.mean", &f32s(&cache.mean), &f64_to_f32(&means), 1e-6);
        let rstd: Vec<f64> = vars.iter().map(|v| 1.0 / (v + 1e-5).sqrt()).collect();
        assert_close("cache.rstd", &f32s(&cache.rstd), &f64_to_f32(&rstd), 1e-6);
        let m = (x.numel() / c) as f64;
        let rm: Vec<f64> = means.iter().map(|mu| 0.3 * mu).collect();
        let rv: Vec<f64> = vars.iter().map(|v| 0.7 + 0.3 * v * m / (m - 1.0)).collect();
        assert_close("running_mean", &f32s(&state.running_mean), &f64_to_f32(&rm), 1e-6);
        assert_close("running_var", &f32s(&state.running_var), &f64_to_f32(&rv), 1e-6);
        let (y, _) = batch_norm_train(&x, None, None, None, 0.1, 1e-5).unwrap();
        assert_close(&format!("batch_norm {dims:?} no affine"), &f32s(&y), &f64_to_f32(&batch_norm64(&xv, dims, None, None, 1e-5).0), 1e-6);
    }
}

/// batch_norm_backward against central differences of the f64 forward: loss = sum(y * r).
#[test]
fn batch_norm_backward_matches_finite_differences() {
    let dims = [3, 4, 2, 3];
    let x = randn(&dims, 101);
    let w = randn(&[4], 102);
    let b = randn(&[4], 103);
    let r = randn(&dims, 104);
    let (xv, wv, bv, rv) = (to_f64(&f32s(&x)), to_f64(&f32s(&w)), to_f64(&f32s(&b)), to_f64(&f32s(&r)));
    let eps = 1e-5;
    let dot = |y: &[f64]| y.iter().zip(&rv).map(|(a, b)| a * b).sum::<f64>();

    let (_, cache) = batch_norm_train(&x, Some(&w), Some(&b), None, 0.1, eps as f32).unwrap();
    let g = batch_norm_backward(&r, &x, &cache, Some(&w)).unwrap();
    let fx = |v: &[f64]| dot(&batch_norm64(v, &dims, Some(&wv), Some(&bv), eps).0);
    assert_close("dx", &f32s(&g.dx), &f64_to_f32(&fd_grad(&fx, &xv, 1e-6)), 1e-5);
    let fw = |v: &[f64]| dot(&batch_norm64(&xv, &dims, Some(v), Some(&bv), eps).0);
    assert_close("dweight", &f32s(g.dweight.as_ref().unwrap()), &f64_to_f32(&fd_grad(&fw, &wv, 1e-6)), 1e-5);
    let fb = |v: &[f64]| dot(&batch_norm64(&xv, &dims, Some(&wv), Some(v), eps).0);
    assert_close("dbias", &f32s(g.dbias.as_ref().unwrap()), &f64_to_f32(&fd_grad(&fb, &bv, 1e-6)), 1e-5);

    // affine=False: only dx, and no parameter gradients.
    let (_, cache) = batch_norm_train(&x, None, None, None, 0.1, eps as f32).unwrap();
    let g = batch_norm_backward(&r, &x, &cache, None).unwrap();
    assert!(g.dweight.is_none() && g.dbias.is_none());
    let fx = |v: &[f64]| dot(&batch_norm64(v, &dims, None, None, eps).0);
    assert_close("dx (no affine)", &f32s(&g.dx), &f64_to_f32(&fd_grad(&fx, &xv, 1e-6)), 1e-5);
}

#[test]
fn batch_norm_rejects_bad_operands() {
    let x = randn(&[4, 3, 2, 2], 1);
    let w = randn(&[3], 2);
    let err = batch_norm_train(&x, Some(&randn(&[4], 3)), None, None, 0.1, 1e-5).unwrap_err().to_string();
    assert!(err.contains("weight") && err.contains("[4]") && err.contains("[4, 3, 2, 2]"), "{err}");
    assert!(batch_norm_train(&x, None, Some(&w), None, 0.1, 1e-5).is_err(), "bias without weight");
    let mut wrong = BatchNormState::new(4, &Device::Cpu).unwrap();
    let err = batch_norm_train(&x, None, None, Some(&mut wrong), 0.1, 1e-5).unwrap_err().to_string();
    assert!(err.contains("running_mean") && err.contains("[4]"), "{err}");
    assert!(batch_norm_eval(&x, None, None, &wrong, 1e-5).is_err(), "eval with the wrong state");
    let err = batch_norm_train(&randn(&[1, 3], 4), None, None, None, 0.1, 1e-5).unwrap_err().to_string();
    assert!(err.contains("more than one value") && err.contains("[1, 3]"), "{err}");
    assert!(batch_norm_train(&randn(&[5], 5), None, None, None, 0.1, 1e-5).is_err(), "rank 1");
    let (_, cache) = batch_norm_train(&x, Some(&w), Some(&w), None, 0.1, 1e-5).unwrap();
    let err = batch_norm_backward(&randn(&[4, 3, 2, 1], 6), &x, &cache, Some(&w)).unwrap_err().to_string();
    assert!(err.contains("[4, 3, 2, 1]") && err.contains("[4, 3, 2, 2]"), "{err}");
    let (_, small) = batch_norm_train(&randn(&[4, 2, 2, 2], 7), None, None, None, 0.1, 1e-5).unwrap();
    let err = batch_norm_backward(&x, &x, &small, None).unwrap_err().to_string();
    assert!(err.contains("cache.mean") && err.contains("[2]"), "{err}");
}
