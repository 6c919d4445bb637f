//! The SAE kernels (kernels/sae.cu) against the CPU reference: centring, the fused bf16 encoder
//! with its on-chip top-k (and the dense fallback for k > 64), the AuxK encoder over a column
//! subset, the sparse decode, column statistics, the sparse backward, the fused Adam, the
//! dead-latent counters, and whole training runs (determinism on the device, agreement with the
//! CPU). Shapes include sizes that divide no tile and the real ones (d = 1280, n = 20,480 and
//! 81,920, k = 32).

use crate::common::*;
use revelio::ops::optim::{AdamConfig, AdamScalars};
use revelio::ops::sae::{self as ops, Centered, Code, Grads};
use revelio::sae::SaeParams;
use revelio::{DType, Device, Tensor};

fn to_gpu(t: &Tensor) -> Tensor {
    t.to_device(&cuda()).unwrap()
}

fn randn_scaled(dims: &[usize], s: f32, seed: u64) -> Tensor {
    revelio::ops::scale(&randn(dims, seed), s).unwrap()
}

/// A random code over n latents: k distinct latents per row (descending values).
fn random_code(rows: usize, n: usize, k: usize, seed: u64) -> Code {
    let mut idx = Vec::with_capacity(rows * k);
    let mut vals = Vec::with_capacity(rows * k);
    for b in 0..rows {
        let mut chosen: Vec<i32> = Vec::new();
        let mut c = 0u64;
        while chosen.len() < k {
            let j = (revelio::rng::bits(seed, (b as u64) << 20 | c) % n as u64) as i32;
            c += 1;
            if !chosen.contains(&j) {
                chosen.push(j);
            }
        }
        let mut v: Vec<f32> = (0..k).map(|e| revelio::rng::normal(seed + 1, (b * k + e) as u64).abs() + 0.1).collect();
        v.sort_by(|a, b| b.total_cmp(a));
        if b % 3 == 0 {
            // some zeros (ReLU'd values) exercise the masks
            v[k - 1] = 0.0;
        }
        idx.extend(chosen);
        vals.extend(v);
    }
    Code {
        vals: Tensor::from_vec(vals, [rows, k], &Device::Cpu).unwrap(),
        idx: Tensor::from_vec(idx, [rows, k], &Device::Cpu).unwrap(),
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn center_matches_the_cpu() {
    for (rows, d) in [(1, 1), (37, 41), (sized(8192, 512), 1280)] {
        let x = randn(&[rows, d], 1);
        let b = randn(&[d], 2);
        let cpu = ops::center(&x, &b).unwrap();
        let gpu = ops::center(&to_gpu(&x), &to_gpu(&b)).unwrap();
        assert_eq!(gpu.xc.to_f32_vec().unwrap(), cpu.xc.to_f32_vec().unwrap(), "xc [{rows}, {d}]");
        let x16 = gpu.xc16.expect("CUDA makes the bf16 copy");
        assert_eq!(x16.to_f32_vec().unwrap(), revelio::ops::to_dtype(&cpu.xc, DType::BF16).unwrap().to_f32_vec().unwrap());
    }
}

/// Checks a CUDA code against the f32 dense pre-activation `pre` [rows, n] computed on the CPU
/// from the same bf16-rounded operands: values match pre at the chosen latents (the GPU sums
/// the same bf16 products in another order, so to 1e-4 of the row's scale), come in
/// descending order, and the chosen set is a top-k: nothing left out beats anything chosen by
/// more than that tolerance. Exact ties and near-ties may resolve differently; the set is
/// still a valid top-k.
fn assert_valid_topk(what: &str, code: &Code, pre: &[f32], n: usize) {
    let (rows, k) = code.vals.dims2("test").unwrap();
    let vals = code.vals.to_f32_vec().unwrap();
    let idx: Vec<i32> = code.idx.to_vec().unwrap();
    for b in 0..rows {
        let row = &pre[b * n..(b + 1) * n];
        let scale = row.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
        let tol = 1e-4 * scale;
        let chosen = &idx[b * k..(b + 1) * k];
        let mut seen = std::collections::HashSet::new();
        for e in 0..k {
            let j = chosen[e] as usize;
            assert!(j < n && seen.insert(j), "{what}: row {b} picks latent {j} twice or out of range");
            assert!((vals[b * k + e] - row[j]).abs() <= tol, "{what}: row {b} latent {j}: {} vs {}", vals[b * k + e], row[j]);
            if e > 0 {
                assert!(vals[b * k + e] <= vals[b * k + e - 1], "{what}: row {b} not descending");
            }
        }
        let min_chosen = chosen.iter().map(|&j| row[j as usize]).fold(f32::INFINITY, f32::min);
        let max_left = (0..n).filter(|j| !seen.contains(j)).map(|j| row[j]).fold(f32::NEG_INFINITY, f32::max);
        assert!(max_left <= min_chosen + tol, "{what}: row {b}: {max_left} left out beats {min_chosen} chosen");
    }
}

/// (rows, d, n, k): tails of every tile dim, d not a multiple of 8 (element loads), the k <= 64
/// instantiation, and the real shapes.
const ENC_SHAPES: [(usize, usize, usize, usize); 7] =
    [(1, 16, 16, 1), (37, 40, 300, 5), (130, 41, 257, 32), (257, 320, 1000, 64), (200, 1280, 20480, 32), (64, 1280, 81920, 32), (129, 640, 40960, 33)];
/// Small size: the same k and tail cases with n of a few thousand latents.
const ENC_SHAPES_SMALL: [(usize, usize, usize, usize); 6] =
    [(1, 16, 16, 1), (37, 40, 300, 5), (130, 41, 257, 32), (257, 320, 1000, 64), (64, 320, 2048, 32), (129, 64, 1100, 33)];

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn fused_encoder_picks_a_true_top_k() {
    for (i, &(rows, d, n, k)) in sized(&ENC_SHAPES[..], &ENC_SHAPES_SMALL[..]).iter().enumerate() {
        for relu in [false, true] {
            let x = randn(&[rows, d], 10 + i as u64);
            let w = randn_scaled(&[d, n], (1.0 / d as f32).sqrt(), 20 + i as u64);
            let b = randn_scaled(&[n], 0.1, 30 + i as u64);
            let b_dec = randn_scaled(&[d], 0.1, 40 + i as u64);
            let gpu_c = ops::center(&to_gpu(&x), &to_gpu(&b_dec)).unwrap();
            let w_gpu = to_gpu(&w);
            let w16 = revelio::ops::to_dtype(&w_gpu, DType::BF16).unwrap();
            let code = ops::encode_topk(&gpu_c, &w_gpu, Some(&w16), &to_gpu(&b), k, relu).unwrap();
            // The reference: the same bf16 operands in f32 on the CPU.
            let xc16 = revelio::ops::to_dtype(gpu_c.xc16.as_ref().unwrap(), DType::F32).unwrap().to_device(&Device::Cpu).unwrap();
            let w_r = round_through(&w, DType::BF16);
            let pre = ops::encode_dense(&xc16, &w_r, &b, relu).unwrap().to_f32_vec().unwrap();
            assert_valid_topk(&format!("encoder [{rows}, {d}] x [{d}, {n}] k {k} relu {relu}"), &code, &pre, n);
        }
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn dense_fallback_and_aux_encoder_match_the_cpu() {
    let (rows, d, n) = (150, 96, 700);
    let x = randn(&[rows, d], 50);
    let w = randn_scaled(&[d, n], 0.1, 51);
    let b = randn_scaled(&[n], 0.1, 52);
    let zero = Tensor::zeros([d], DType::F32, &Device::Cpu).unwrap();
    let cpu_c = ops::center(&x, &zero).unwrap();
    let gpu_c = ops::center(&to_gpu(&x), &to_gpu(&zero)).unwrap();
    let (wg, bg) = (to_gpu(&w), to_gpu(&b));
    // k > 64: the f32 dense path on both sides.
    let want = ops::encode_topk(&cpu_c, &w, None, &b, 100, false).unwrap();
    let got = ops::encode_topk(&gpu_c, &wg, Some(&revelio::ops::to_dtype(&wg, DType::BF16).unwrap()), &bg, 100, false).unwrap();
    let pre = ops::encode_dense(&cpu_c.xc, &w, &b, false).unwrap().to_f32_vec().unwrap();
    assert_valid_topk("dense fallback k 100", &got, &pre, n);
    assert_tensor_close("dense fallback values", &got.vals, &want.vals, 1e-5);
    // AuxK over every third latent, fused (k 20) and dense (k 150), with latent ids.
    let cols: Vec<i32> = (0..n as i32).step_by(3).collect();
    let pre_relu = ops::encode_dense(&cpu_c.xc, &w, &b, true).unwrap().to_f32_vec().unwrap();
    let sub: Vec<f32> = (0..rows).flat_map(|r| cols.iter().map(|&j| pre_relu[r * n + j as usize]).collect::<Vec<_>>()).collect();
    for ka in [20, 150] {
        let w16 = revelio::ops::to_dtype(&wg, DType::BF16).unwrap();
        let code = ops::encode_topk_cols(&gpu_c, &wg, Some(&w16), &bg, &cols, ka).unwrap();
        let idx: Vec<i32> = code.idx.to_vec().unwrap();
        assert!(idx.iter().all(|j| j % 3 == 0), "aux ids are latent ids of the subset");
        let local = Code { vals: code.vals.clone(), idx: Tensor::from_vec(idx.iter().map(|j| j / 3).collect::<Vec<i32>>(), [rows, ka], &Device::Cpu).unwrap() };
        // bf16 operands on the fused path: compare against the f32 pre with a bf16 tolerance.
        let scale_tol = if ka <= 64 { 2e-2 } else { 1e-4 };
        let vals = local.vals.to_f32_vec().unwrap();
        let lidx: Vec<i32> = local.idx.to_vec().unwrap();
        for r in 0..rows {
            for e in 0..ka {
                let want = sub[r * cols.len() + lidx[r * ka + e] as usize];
                assert!((vals[r * ka + e] - want).abs() <= scale_tol * (1.0 + want.abs()), "aux k {ka} row {r}: {} vs {want}", vals[r * ka + e]);
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn decode_matches_the_cpu() {
    let shapes = sized(
        [(1, 3, 5, 1), (33, 129, 300, 7), (64, 1280, 20480, 32), (16, 1280, 81920, 256)],
        [(1, 3, 5, 1), (33, 129, 300, 7), (16, 320, 2048, 32), (4, 320, 4096, 256)],
    );
    for (i, &(rows, d, n, kk)) in shapes.iter().enumerate() {
        let code = random_code(rows, n, kk, 60 + i as u64);
        let mut w = randn(&[n, d], 61 + i as u64);
        ops::normalize_rows(&mut w).unwrap();
        let inputs = [randn(&[rows, d], 62 + i as u64), randn(&[d], 63), code.vals.clone(), code.idx.clone(), w];
        for bias in [true, false] {
            check_cuda_vs_cpu(&format!("decode [{rows}, {d}] n {n} k {kk} bias {bias}"), DType::F32, &inputs, None, |t| {
                let code = Code { vals: t[2].clone(), idx: t[3].clone() };
                let dec = ops::decode(&t[0], bias.then_some(&t[1]), &code, &t[4])?;
                Ok(vec![dec.resid, dec.dot, dec.sse])
            });
        }
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn column_statistics_match_the_cpu() {
    // f32 Welford per thread, merged in a fixed order, against f64 two-pass sums: each partial
    // carries about rows * 6e-8 relative error in the worst case and far less on random data
    // (errors cancel like sqrt(rows)); 1e-4 covers 8192 rows with an offset mean of 3.
    for (rows, d) in [(1, 5), (255, 33), (257, 1), (sized(8192, 512), 1280)] {
        let x = revelio::ops::affine(&randn(&[rows, d], 70), 1.0, 3.0).unwrap();
        check_cuda_vs_cpu(&format!("col_stats [{rows}, {d}]"), DType::F32, &[x], Some(1e-4), |t| {
            let (s, m2) = ops::col_stats(&t[0])?;
            Ok(vec![s, m2])
        });
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn sparse_backward_matches_the_cpu() {
    let shapes = sized(
        [(4, 3, 6, 2, 0), (37, 41, 200, 5, 3), (256, 1280, 20480, 32, 256), (64, 320, 1000, 64, 0)],
        [(4, 3, 6, 2, 0), (37, 41, 200, 5, 3), (64, 320, 2048, 32, 256), (64, 320, 1000, 64, 0)],
    );
    for (i, &(rows, d, n, k, ka)) in shapes.iter().enumerate() {
        for relu in [false, true] {
            let seed = 80 + 10 * i as u64;
            let code = random_code(rows, n, k, seed);
            let aux = random_code(rows, n, ka.max(1), seed + 1);
            let mut w_dec = randn(&[n, d], seed + 2);
            ops::normalize_rows(&mut w_dec).unwrap();
            let inputs = vec![
                randn(&[rows, d], seed + 3),            // 0 xc
                randn_scaled(&[d, n], 0.1, seed + 4),   // 1 W_enc
                w_dec,                                  // 2 W_dec
                code.vals, code.idx,                    // 3, 4
                randn(&[rows, k], seed + 5),            // 5 dot
                randn(&[rows, d], seed + 6),            // 6 resid
                randn(&[d], seed + 7),                  // 7 resid_sum
                aux.vals, aux.idx,                      // 8, 9
                randn(&[rows, ka.max(1)], seed + 8),    // 10 aux dot
                randn(&[rows, d], seed + 9),            // 11 aux resid
                randn(&[d], seed + 10),                 // 12 aux resid_sum
            ];
            check_cuda_vs_cpu(&format!("sparse backward [{rows}, {d}] n {n} k {k} aux {ka} relu {relu}"), DType::F32, &inputs, None, |t| {
                let main = Code { vals: t[3].clone(), idx: t[4].clone() };
                let auxc = Code { vals: t[8].clone(), idx: t[9].clone() };
                let aux = (ka > 0).then(|| ops::AuxBackward { code: &auxc, dot: &t[10], resid: &t[11], resid_sum: &t[12], c: 0.3 });
                let g = ops::sparse_backward(&ops::SparseBackward {
                    xc: &t[0],
                    w_enc: &t[1],
                    w_dec: &t[2],
                    code: &main,
                    dot: &t[5],
                    resid: &t[6],
                    resid_sum: &t[7],
                    c: 0.7,
                    relu,
                    aux,
                })?;
                Ok(vec![g.w_enc, g.b_enc, g.w_dec, g.b_dec])
            });
        }
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn fused_adam_matches_the_cpu() {
    for &(d, n) in &[(3, 5), (41, 300), sized((1280, 20480), (320, 2048))] {
        for moments in [DType::F32, DType::BF16] {
            let params = SaeParams { w_enc: randn(&[d, n], 90), b_enc: randn(&[n], 91), w_dec: randn(&[n, d], 92), b_dec: randn(&[d], 93) };
            let grads = [randn(&[d, n], 94), randn(&[n], 95), randn(&[n, d], 96), randn(&[d], 97)];
            let run = |dev: &Device| -> (SaeParams, SaeParams, SaeParams, Option<Tensor>) {
                let mut p = params.to_device(dev).unwrap();
                let g = Grads { w_enc: grads[0].to_device(dev).unwrap(), b_enc: grads[1].to_device(dev).unwrap(), w_dec: grads[2].to_device(dev).unwrap(), b_dec: grads[3].to_device(dev).unwrap() };
                let mut m = p.zeros_like(moments).unwrap();
                let mut v = p.zeros_like(moments).unwrap();
                let mut w16 = dev.is_cuda().then(|| revelio::ops::to_dtype(&p.w_enc, DType::BF16).unwrap());
                let cfg = AdamConfig::adam(1e-3);
                for step in 1..=3 {
                    ops::adam_step(p.adam_slots(&g, &mut m, &mut v), w16.as_mut(), &AdamScalars::new(&cfg, step)).unwrap();
                }
                (p, m, v, w16)
            };
            let (pc, mc, vc, _) = run(&Device::Cpu);
            let (pg, mg, vg, w16) = run(&cuda());
            for (name, a, b) in [("W_enc", &pg.w_enc, &pc.w_enc), ("b_enc", &pg.b_enc, &pc.b_enc), ("W_dec", &pg.w_dec, &pc.w_dec), ("b_dec", &pg.b_dec, &pc.b_dec), ("m", &mg.w_dec, &mc.w_dec), ("v", &vg.w_enc, &vc.w_enc)] {
                assert_tensor_close(&format!("adam {name} [{d}, {n}] moments {moments}"), a, b, 1e-5);
            }
            let w16 = w16.unwrap();
            assert_eq!(w16.to_f32_vec().unwrap(), revelio::ops::to_dtype(&pg.w_enc, DType::BF16).unwrap().to_f32_vec().unwrap(), "the shadow is W_enc in bf16");
        }
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn dead_latent_counters_match_the_cpu() {
    let n = 1000;
    let code = random_code(64, n, 8, 100);
    let since: Vec<i64> = (0..n as i64).map(|j| j * 7).collect();
    let mut cpu_s = Tensor::from_vec(since.clone(), [n], &Device::Cpu).unwrap();
    let mut gpu_s = to_gpu(&cpu_s);
    ops::update_since(&mut cpu_s, &code).unwrap();
    let gcode = Code { vals: to_gpu(&code.vals), idx: to_gpu(&code.idx) };
    ops::update_since(&mut gpu_s, &gcode).unwrap();
    assert_eq!(gpu_s.to_vec::<i64>().unwrap(), cpu_s.to_vec::<i64>().unwrap());
}

/// Planted data: rows are sums of 3 of 48 unit directions in R^64.
fn planted_rows(rows: usize) -> revelio::sae::data::Rows {
    let (d, m) = (64, 48);
    let mut dirs = randn(&[m, d], 110);
    ops::normalize_rows(&mut dirs).unwrap();
    let dv = dirs.to_f32_vec().unwrap();
    let mut x = vec![0.0f32; rows * d];
    for r in 0..rows {
        for t in 0..3u64 {
            let j = (revelio::rng::bits(111, r as u64 * 3 + t) % m as u64) as usize;
            for i in 0..d {
                x[r * d + i] += (1.0 + revelio::rng::uniform(112, r as u64 * 3 + t)) * dv[j * d + i];
            }
        }
    }
    let x = Tensor::from_vec(x, [rows, d], &Device::Cpu).unwrap();
    revelio::sae::data::Rows { x, image: (0..rows).collect(), per_image: 1, map_hw: None }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn training_on_the_gpu_is_deterministic_and_agrees_with_the_cpu() {
    use revelio::sae::checkpoint::Provenance;
    use revelio::sae::data::RowKind;
    use revelio::sae::loss::AuxConfig;
    use revelio::sae::train::{self, TrainConfig, TrainOptions};
    let rows = planted_rows(3000);
    let cfg = TrainConfig {
        k: 3,
        d_sae: 256,
        relu: true,
        batch: sized(512, 128),
        steps: 300,
        warmup: 20,
        lr: 2e-3,
        aux: AuxConfig { k: 32, coef: 1.0 / 32.0, dead_after: 4096 },
        ..TrainConfig::revelio(64)
    };
    let prov = Provenance { source: "planted".into(), tensor: None, model: String::new(), layer: None, timestep: None, rows: RowKind::Image, split: String::new(), holdout_images: vec![] };
    let dir = std::env::temp_dir().join(format!("revelio-gpu-sae-{}", std::process::id()));
    let gpu_rows = revelio::sae::data::Rows { x: to_gpu(&rows.x), ..rows.clone() };
    let a = train::train(&cfg, &gpu_rows, &dir.join("a"), &prov, &TrainOptions::default()).unwrap();
    let b = train::train(&cfg, &gpu_rows, &dir.join("b"), &prov, &TrainOptions::default()).unwrap();
    for (x, y) in [(&a.sae.params.w_enc, &b.sae.params.w_enc), (&a.sae.params.w_dec, &b.sae.params.w_dec), (&a.sae.params.b_dec, &b.sae.params.b_dec)] {
        assert_eq!(x.to_f32_vec().unwrap(), y.to_f32_vec().unwrap(), "same seed, same weights on the device");
    }
    let c = train::train(&cfg, &rows, &dir.join("c"), &prov, &TrainOptions::default()).unwrap();
    let eval = |st: &train::TrainState| {
        let sae = revelio::sae::Sae::from_params(st.sae.cfg, st.sae.params.to_device(&Device::Cpu).unwrap()).unwrap();
        revelio::sae::metrics::evaluate(&sae, &rows, 1024).unwrap().fvu
    };
    let (fg, fc) = (eval(&a), eval(&c));
    // The bf16 encoder changes near-tie selections, so the runs drift apart; both must learn.
    assert!(fg < 0.2 && (fg - fc).abs() < 0.05, "FVU on the GPU {fg}, on the CPU {fc}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn encoder_without_bf16_copies_uses_the_dense_path() {
    // A Centered built by hand (f32 only) falls back to the dense path on CUDA.
    let (rows, d, n, k) = (20, 24, 90, 4);
    let x = randn(&[rows, d], 120);
    let w = randn_scaled(&[d, n], 0.2, 121);
    let b = randn_scaled(&[n], 0.1, 122);
    let c = Centered { xc: to_gpu(&x), xc16: None };
    let got = ops::encode_topk(&c, &to_gpu(&w), None, &to_gpu(&b), k, false).unwrap();
    let want = ops::encode_topk(&Centered { xc: x, xc16: None }, &w, None, &b, k, false).unwrap();
    assert_eq!(got.idx.to_vec::<i32>().unwrap(), want.idx.to_vec::<i32>().unwrap());
    assert_tensor_close("dense path values", &got.vals, &want.vals, 1e-5);
}
