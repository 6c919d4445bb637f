//! The k-SAE on the CPU: forward against a naive f64 implementation, the whole loss's gradient
//! (top-k support fixed, AuxK included) against central differences, the fused Adam against
//! the engine's, recovery of planted sparse directions, determinism and exact resume, bad
//! input, and the analysis (top images, sigma_label by hand, the explorer) and CLI on tiny
//! stores with real PNG images.

mod common;

use common::*;
use revelio::features::store::{FeatureStoreWriter, ImageEntry, Manifest, STORE_FORMAT};
use revelio::ops::optim::{adam_step, AdamConfig, AdamScalars, AdamState};
use revelio::ops::sae::{self as ops, Code};
use revelio::sae::checkpoint::{self, Provenance};
use revelio::sae::data::{self, RowKind, Rows};
use revelio::sae::loss::{auxk, main_loss, AuxConfig, LossKind};
use revelio::sae::train::{self, BDecInit, Decay, Moments, TrainConfig, TrainOptions};
use revelio::sae::{Init, Sae, SaeConfig, SaeParams};
use revelio::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("revelio-sae-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small SAE with random (not initial) parameters, so every term is exercised.
fn random_sae(d: usize, n: usize, k: usize, relu: bool, seed: u64) -> Sae {
    let cfg = SaeConfig { d_in: d, d_sae: n, k, relu, input_scale: 1.0 };
    let mut w_dec = randn(&[n, d], seed + 3);
    ops::normalize_rows(&mut w_dec).unwrap();
    let params = SaeParams {
        w_enc: revelio::ops::scale(&randn(&[d, n], seed), 0.5).unwrap(),
        b_enc: revelio::ops::scale(&randn(&[n], seed + 1), 0.1).unwrap(),
        w_dec,
        b_dec: revelio::ops::scale(&randn(&[d], seed + 2), 0.1).unwrap(),
    };
    Sae::from_params(cfg, params).unwrap()
}

fn f64s(t: &Tensor) -> Vec<f64> {
    to_f64(&t.to_f32_vec().unwrap())
}

#[allow(clippy::too_many_arguments)]
/// Naive f64 pre-activations [B, n] = relu?((x - b_dec) W_enc + b_enc).
fn naive_pre(x: &[f64], w_enc: &[f64], b_enc: &[f64], b_dec: &[f64], rows: usize, d: usize, n: usize, relu: bool) -> Vec<f64> {
    let mut pre = vec![0.0; rows * n];
    for b in 0..rows {
        for j in 0..n {
            let mut acc = b_enc[j];
            for i in 0..d {
                acc += (x[b * d + i] - b_dec[i]) * w_enc[i * n + j];
            }
            pre[b * n + j] = if relu { acc.max(0.0) } else { acc };
        }
    }
    pre
}

/// The k largest of each row (value descending, lower index first on ties).
fn naive_topk(pre: &[f64], rows: usize, n: usize, k: usize) -> Vec<Vec<usize>> {
    (0..rows)
        .map(|b| {
            let mut ids: Vec<usize> = (0..n).collect();
            ids.sort_by(|&p, &q| pre[b * n + q].partial_cmp(&pre[b * n + p]).unwrap().then(p.cmp(&q)));
            ids.truncate(k);
            ids
        })
        .collect()
}

#[test]
fn forward_matches_a_naive_implementation() {
    for relu in [false, true] {
        let (rows, d, n, k) = (9, 12, 40, 5);
        let sae = random_sae(d, n, k, relu, 10);
        let x = randn(&[rows, d], 20);
        let f = sae.forward(&x).unwrap();
        let p = &sae.params;
        let (xs, we, be, wd, bd) = (f64s(&x), f64s(&p.w_enc), f64s(&p.b_enc), f64s(&p.w_dec), f64s(&p.b_dec));
        let pre = naive_pre(&xs, &we, &be, &bd, rows, d, n, relu);
        let top = naive_topk(&pre, rows, n, k);
        let idx: Vec<i32> = f.code.idx.to_vec().unwrap();
        let want_idx: Vec<i32> = top.iter().flatten().map(|&j| j as i32).collect();
        assert_eq!(idx, want_idx, "relu {relu}: selected latents");
        let want_vals: Vec<f64> = top.iter().enumerate().flat_map(|(b, t)| t.iter().map(move |&j| (b, j))).map(|(b, j)| pre[b * n + j]).collect();
        assert_close("vals", &f.code.vals.to_f32_vec().unwrap(), &f64_to_f32(&want_vals), 1e-5);
        // residual x - x_hat, x_hat = z W_dec + b_dec, and the per-entry dots.
        let mut resid = vec![0.0; rows * d];
        let mut dots = vec![0.0; rows * k];
        for b in 0..rows {
            for i in 0..d {
                let xh = bd[i] + top[b].iter().map(|&j| pre[b * n + j] * wd[j * d + i]).sum::<f64>();
                resid[b * d + i] = xs[b * d + i] - xh;
            }
            for (e, &j) in top[b].iter().enumerate() {
                dots[b * k + e] = (0..d).map(|i| resid[b * d + i] * wd[j * d + i]).sum();
            }
        }
        assert_close("resid", &f.decoded.resid.to_f32_vec().unwrap(), &f64_to_f32(&resid), 1e-5);
        assert_close("dot", &f.decoded.dot.to_f32_vec().unwrap(), &f64_to_f32(&dots), 1e-5);
        let sse: Vec<f64> = (0..rows).map(|b| (0..d).map(|i| resid[b * d + i].powi(2)).sum()).collect();
        assert_close("sse", &f.decoded.sse.to_f32_vec().unwrap(), &f64_to_f32(&sse), 1e-5);
    }
}

/// The loss as a function of flat f64 parameters [W_enc | b_enc | W_dec | b_dec] with the main
/// and AuxK supports fixed: nmse + coef * sum(r_hat + b_dec - b_dec0 - r0)^2 / D_r, r0 = the
/// residual at the base point (detached, as openai's AuxK), b_dec0 the base b_dec (the
/// reference's `pre_bias.detach()` in the target).
struct FixedSupportLoss {
    x: Vec<f64>,
    rows: usize,
    d: usize,
    n: usize,
    relu: bool,
    main: Vec<Vec<usize>>,
    aux: Vec<Vec<usize>>,
    coef: f64,
    r0: Vec<f64>,
    b_dec0: Vec<f64>,
}

impl FixedSupportLoss {
    fn split<'a>(&self, p: &'a [f64]) -> (&'a [f64], &'a [f64], &'a [f64], &'a [f64]) {
        let (d, n) = (self.d, self.n);
        let (we, rest) = p.split_at(d * n);
        let (be, rest) = rest.split_at(n);
        let (wd, bd) = rest.split_at(n * d);
        (we, be, wd, bd)
    }

    fn residual(&self, p: &[f64]) -> Vec<f64> {
        let (we, be, wd, bd) = self.split(p);
        let (rows, d, n) = (self.rows, self.d, self.n);
        let pre = naive_pre(&self.x, we, be, bd, rows, d, n, self.relu);
        let mut r = vec![0.0; rows * d];
        for b in 0..rows {
            for i in 0..d {
                let xh = bd[i] + self.main[b].iter().map(|&j| pre[b * n + j] * wd[j * d + i]).sum::<f64>();
                r[b * d + i] = self.x[b * d + i] - xh;
            }
        }
        r
    }

    fn centred_ss(t: &[f64], rows: usize, d: usize) -> f64 {
        (0..d)
            .map(|i| {
                let m = (0..rows).map(|b| t[b * d + i]).sum::<f64>() / rows as f64;
                (0..rows).map(|b| (t[b * d + i] - m).powi(2)).sum::<f64>()
            })
            .sum()
    }

    fn loss(&self, p: &[f64]) -> f64 {
        let (rows, d, n) = (self.rows, self.d, self.n);
        let r = self.residual(p);
        let main = r.iter().map(|v| v * v).sum::<f64>() / Self::centred_ss(&self.x, rows, d);
        let (we, be, wd, bd) = self.split(p);
        let pre = naive_pre(&self.x, we, be, bd, rows, d, n, true);
        let mut aux = 0.0;
        for b in 0..rows {
            for i in 0..d {
                let rh = self.aux[b].iter().map(|&j| pre[b * n + j] * wd[j * d + i]).sum::<f64>() + bd[i] - self.b_dec0[i];
                aux += (rh - self.r0[b * d + i]).powi(2);
            }
        }
        main + self.coef * aux / Self::centred_ss(&self.r0, rows, d)
    }
}

#[test]
fn gradient_of_the_whole_loss_matches_finite_differences() {
    for relu in [false, true] {
        let (rows, d, n, k) = (6, 5, 14, 3);
        let sae = random_sae(d, n, k, relu, 30 + relu as u64);
        let x = randn(&[rows, d], 40);
        let fwd = sae.forward(&x).unwrap();
        let (_, x_m2) = ops::col_stats(&x).unwrap();
        let main = main_loss(LossKind::Nmse, &fwd, &x_m2, 1.0).unwrap();
        let (r_sum, r_m2) = ops::col_stats(&fwd.decoded.resid).unwrap();
        // "Dead" latents: the ones no row selected, so AuxK has work.
        let idx: Vec<i32> = fwd.code.idx.to_vec().unwrap();
        let dead: Vec<i32> = (0..n as i32).filter(|j| !idx.contains(j)).collect();
        let aux_cfg = AuxConfig { k: 2, coef: 0.5, dead_after: 0 };
        let aux = auxk(&sae, &fwd, &dead, &aux_cfg, &r_m2).unwrap().expect("dead latents exist");
        let grads = sae.backward(&fwd, main.c, &r_sum, Some(aux.backward())).unwrap();

        let rows_of = |c: &Code| -> Vec<Vec<usize>> {
            let kk = c.idx.dims()[1];
            let v: Vec<i32> = c.idx.to_vec().unwrap();
            v.chunks(kk).map(|r| r.iter().map(|&j| j as usize).collect()).collect()
        };
        let p = &sae.params;
        let base: Vec<f64> = [&p.w_enc, &p.b_enc, &p.w_dec, &p.b_dec].iter().flat_map(|t| f64s(t)).collect();
        let mut f = FixedSupportLoss {
            x: f64s(&x),
            rows,
            d,
            n,
            relu,
            main: rows_of(&fwd.code),
            aux: rows_of(&aux.code),
            coef: 0.5,
            r0: Vec::new(),
            b_dec0: f64s(&p.b_dec),
        };
        f.r0 = f.residual(&base);
        let want_loss = main.loss + aux.loss;
        assert!((f.loss(&base) - want_loss).abs() < 1e-5 * want_loss.abs().max(1.0), "loss {} vs {}", f.loss(&base), want_loss);
        let g = fd_grad(&|q| f.loss(q), &base, 1e-6);
        let (ge, gbe, gwd, gbd) = f.split(&g);
        // W_dec's gradient loses its component along each (unit) row, as Revelio's step does.
        let wd = f64s(&p.w_dec);
        let mut gwd = gwd.to_vec();
        for j in 0..n {
            let dot: f64 = (0..d).map(|i| gwd[j * d + i] * wd[j * d + i]).sum();
            for i in 0..d {
                gwd[j * d + i] -= dot * wd[j * d + i];
            }
        }
        assert_close("dW_enc", &grads.w_enc.to_f32_vec().unwrap(), &f64_to_f32(ge), 1e-4);
        assert_close("db_enc", &grads.b_enc.to_f32_vec().unwrap(), &f64_to_f32(gbe), 1e-4);
        assert_close("dW_dec", &grads.w_dec.to_f32_vec().unwrap(), &f64_to_f32(&gwd), 1e-4);
        assert_close("db_dec", &grads.b_dec.to_f32_vec().unwrap(), &f64_to_f32(gbd), 1e-4);
    }
}

#[test]
fn fused_adam_equals_the_engines_adam_then_row_normalisation() {
    let sae = random_sae(6, 10, 2, false, 50);
    let grads = [randn(&[6, 10], 51), randn(&[10], 52), randn(&[10, 6], 53), randn(&[6], 54)];
    let cfg = AdamConfig::adam(1e-2);
    let mut fused = sae.clone();
    let mut m = fused.params.zeros_like(DType::F32).unwrap();
    let mut v = fused.params.zeros_like(DType::F32).unwrap();
    let g = ops::Grads { w_enc: grads[0].clone(), b_enc: grads[1].clone(), w_dec: grads[2].clone(), b_dec: grads[3].clone() };
    let mut want = [sae.params.w_enc.deep_clone().unwrap(), sae.params.b_enc.deep_clone().unwrap(), sae.params.w_dec.deep_clone().unwrap(), sae.params.b_dec.deep_clone().unwrap()];
    let mut states: Vec<AdamState> = want.iter().map(|t| AdamState::new(t).unwrap()).collect();
    for step in 1..=3u64 {
        fused.adam_step(&g, &mut m, &mut v, &AdamScalars::new(&cfg, step)).unwrap();
        for ((w, gr), st) in want.iter_mut().zip(&grads).zip(states.iter_mut()) {
            adam_step(w, gr, st, &cfg).unwrap();
        }
        ops::normalize_rows(&mut want[2]).unwrap();
    }
    let p = &fused.params;
    for (got, w) in [&p.w_enc, &p.b_enc, &p.w_dec, &p.b_dec].iter().zip(&want) {
        assert_eq!(got.to_f32_vec().unwrap(), w.to_f32_vec().unwrap());
    }
    // bf16 moments stay close to f32 ones.
    let mut fused16 = sae.clone();
    let mut m16 = fused16.params.zeros_like(DType::BF16).unwrap();
    let mut v16 = fused16.params.zeros_like(DType::BF16).unwrap();
    for step in 1..=3u64 {
        fused16.adam_step(&g, &mut m16, &mut v16, &AdamScalars::new(&cfg, step)).unwrap();
    }
    assert_tensor_close("W_enc with bf16 moments", &fused16.params.w_enc, &p.w_enc, 1e-2);
}

/// N rows, each a sum of 3 of `m` planted unit directions in R^d with weights in [1, 2).
fn planted(n_rows: usize, d: usize, m: usize, seed: u64) -> (Tensor, Vec<f32>) {
    let mut dirs = randn(&[m, d], seed);
    ops::normalize_rows(&mut dirs).unwrap();
    let dv = dirs.to_f32_vec().unwrap();
    let mut x = vec![0.0f32; n_rows * d];
    for r in 0..n_rows {
        for t in 0..3 {
            let j = (revelio::rng::bits(seed + 1, (r * 3 + t) as u64) % m as u64) as usize;
            let w = 1.0 + revelio::rng::uniform(seed + 2, (r * 3 + t) as u64);
            for i in 0..d {
                x[r * d + i] += w * dv[j * d + i];
            }
        }
    }
    (Tensor::from_vec(x, [n_rows, d], &Device::Cpu).unwrap(), dv)
}

fn rows_of(x: Tensor) -> Rows {
    let n = x.dims()[0];
    Rows { x, image: (0..n).collect(), per_image: 1, map_hw: None }
}

fn small_cfg(d: usize, n: usize, k: usize, steps: usize) -> TrainConfig {
    TrainConfig {
        k,
        d_sae: n,
        batch: 256,
        steps,
        warmup: 20,
        lr: 3e-3,
        checkpoint_every: 1000,
        log_every: 10,
        ..TrainConfig::revelio(d)
    }
}

fn prov() -> Provenance {
    Provenance { source: "synthetic".into(), tensor: None, model: String::new(), layer: None, timestep: None, rows: RowKind::Image, split: String::new(), holdout_images: vec![] }
}

#[test]
fn training_recovers_planted_sparse_directions() {
    let (d, m) = (24, 32);
    let (x, dirs) = planted(4096, d, m, 60);
    let cfg = TrainConfig { relu: true, init: Init::Tied, b_dec_init: BDecInit::Zero, aux: AuxConfig { k: 16, coef: 1.0 / 32.0, dead_after: 2048 }, ..small_cfg(d, 64, 3, 1500) };
    let out = tmpdir("planted");
    let st = train::train(&cfg, &rows_of(x), &out, &prov(), &TrainOptions::default()).unwrap();
    let w = st.sae.params.w_dec.to_f32_vec().unwrap();
    let recovered = (0..m)
        .filter(|&j| {
            let t = &dirs[j * d..(j + 1) * d];
            (0..cfg.d_sae).any(|l| w[l * d..(l + 1) * d].iter().zip(t).map(|(a, b)| a * b).sum::<f32>() > 0.9)
        })
        .count();
    assert!(recovered as f64 >= 0.9 * m as f64, "recovered {recovered} of {m} planted directions");
    // The outputs are there and load back to the same function.
    let (back, info) = checkpoint::load_sae(&out, &Device::Cpu).unwrap();
    assert_eq!(back.params.w_dec.to_f32_vec().unwrap(), w);
    assert!(info.relu && info.steps_done == 1500);
    let log = std::fs::read_to_string(out.join(checkpoint::LOG)).unwrap();
    assert_eq!(log.lines().count(), 150);
    std::fs::remove_dir_all(&out).unwrap();
}

fn all_params(st: &train::TrainState) -> Vec<Vec<f32>> {
    let p = &st.sae.params;
    let mut v: Vec<Vec<f32>> = [&p.w_enc, &p.b_enc, &p.w_dec, &p.b_dec].iter().map(|t| t.to_f32_vec().unwrap()).collect();
    v.push(st.m.w_enc.to_f32_vec().unwrap());
    v.push(st.v.w_dec.to_f32_vec().unwrap());
    v
}

#[test]
fn same_seed_same_weights_and_resume_equals_an_uninterrupted_run() {
    let (d, m) = (16, 20);
    let (x, _) = planted(700, d, m, 70);
    let rows = rows_of(x);
    // 700 rows in batches of 256: three batches per epoch, the last one short; AuxK on.
    let cfg = TrainConfig {
        aux: AuxConfig { k: 4, coef: 1.0 / 32.0, dead_after: 512 },
        moments: Moments::Bf16,
        checkpoint_every: 3,
        ..small_cfg(d, 48, 4, 10)
    };
    let a = tmpdir("run-a");
    let b = tmpdir("run-b");
    let c = tmpdir("run-c");
    let full = train::train(&cfg, &rows, &a, &prov(), &TrainOptions::default()).unwrap();
    let again = train::train(&cfg, &rows, &b, &prov(), &TrainOptions::default()).unwrap();
    assert_eq!(all_params(&full), all_params(&again), "same seed, same weights");

    // Killed after 7 steps (last checkpoint at 6), then resumed.
    let cut = train::train(&cfg, &rows, &c, &prov(), &TrainOptions { restart: false, stop_after: Some(7) }).unwrap();
    assert_eq!(cut.step, 7);
    let resumed = train::train(&cfg, &rows, &c, &prov(), &TrainOptions::default()).unwrap();
    assert_eq!(resumed.step, 10);
    assert_eq!(all_params(&full), all_params(&resumed), "resumed run equals the uninterrupted one");
    assert_eq!(full.since.to_vec::<i64>().unwrap(), resumed.since.to_vec::<i64>().unwrap());
    let log_a = std::fs::read_to_string(a.join(checkpoint::LOG)).unwrap();
    let log_c = std::fs::read_to_string(c.join(checkpoint::LOG)).unwrap();
    let steps = |s: &str| s.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["step"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(steps(&log_a), steps(&log_c));

    // Another seed gives other weights; another config refuses the checkpoint.
    let other = train::train(&TrainConfig { seed: 43, ..cfg.clone() }, &rows, &b, &prov(), &TrainOptions { restart: true, stop_after: None }).unwrap();
    assert_ne!(all_params(&full)[0], all_params(&other)[0]);
    let err = train::train(&TrainConfig { k: 3, ..cfg }, &rows, &c, &prov(), &TrainOptions::default()).unwrap_err().to_string();
    assert!(err.contains("another run") && err.contains("--k: 4 -> 3") && err.contains("--restart"), "{err}");
    for dir in [a, b, c] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn the_checkpoint_is_one_file_and_a_legacy_pair_still_resumes() {
    let (d, m) = (8, 10);
    let (x, _) = planted(300, d, m, 71);
    let rows = rows_of(x);
    let cfg = TrainConfig { checkpoint_every: 3, ..small_cfg(d, 24, 3, 8) };
    let (a, c) = (tmpdir("one-file-a"), tmpdir("one-file-c"));
    let full = train::train(&cfg, &rows, &a, &prov(), &TrainOptions::default()).unwrap();
    let cut = train::train(&cfg, &rows, &c, &prov(), &TrainOptions { restart: false, stop_after: Some(5) }).unwrap();
    assert_eq!(cut.step, 5);
    // One file, its step counters in the header; nothing else beside it.
    let path = c.join(checkpoint::STATE);
    let meta = revelio::io::SafeTensorsFile::open(&path).unwrap().metadata();
    let state: serde_json::Value = serde_json::from_str(&meta["state"]).unwrap();
    assert_eq!(state["step"], 3);
    assert!(!c.join(checkpoint::LEGACY_STATE_META).exists());
    // The older layout: the same tensors with no metadata, the counters in checkpoint.json.
    let tensors = revelio::io::SafeTensorsFile::open(&path).unwrap().load_all(&Device::Cpu).unwrap();
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    revelio::io::save_safetensors(&path, &refs, None).unwrap();
    std::fs::write(c.join(checkpoint::LEGACY_STATE_META), &meta["state"]).unwrap();
    let resumed = train::train(&cfg, &rows, &c, &prov(), &TrainOptions::default()).unwrap();
    assert_eq!(all_params(&full), all_params(&resumed), "resumed from the legacy pair");
    assert!(!c.join(checkpoint::LEGACY_STATE_META).exists(), "the next checkpoint replaces the legacy pair");
    // A checkpoint with neither is refused with the way out.
    revelio::io::save_safetensors(&path, &refs, None).unwrap();
    let err = train::train(&cfg, &rows, &c, &prov(), &TrainOptions::default()).unwrap_err().to_string();
    assert!(err.contains("step counters") && err.contains("--restart"), "{err}");
    for dir in [a, c] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn a_finished_run_extends_to_what_a_run_started_with_more_steps_gives() {
    let (d, m) = (8, 10);
    let (x, _) = planted(300, d, m, 72);
    let rows = rows_of(x);
    let short = small_cfg(d, 24, 3, 6);
    let long = TrainConfig { steps: 11, ..short.clone() };
    let (a, b) = (tmpdir("extend-a"), tmpdir("extend-b"));
    let direct = train::train(&long, &rows, &a, &prov(), &TrainOptions::default()).unwrap();
    train::train(&short, &rows, &b, &prov(), &TrainOptions::default()).unwrap();
    let extended = train::train(&long, &rows, &b, &prov(), &TrainOptions::default()).unwrap();
    assert_eq!(extended.step, 11);
    assert_eq!(all_params(&direct), all_params(&extended), "extended run equals one started with --steps 11");
    assert_eq!(std::fs::read(a.join(checkpoint::WEIGHTS)).unwrap(), std::fs::read(b.join(checkpoint::WEIGHTS)).unwrap());
    // Fewer steps than already run, and a decay whose start moves over steps already run, are refused.
    let err = train::train(&TrainConfig { steps: 4, ..long.clone() }, &rows, &b, &prov(), &TrainOptions::default()).unwrap_err().to_string();
    assert!(err.contains("--steps 4") && err.contains("already run 11"), "{err}");
    let decayed = TrainConfig { decay: Decay::Linear, decay_start: 0.5, ..short.clone() };
    let c = tmpdir("extend-c");
    train::train(&decayed, &rows, &c, &prov(), &TrainOptions::default()).unwrap();
    let err = train::train(&TrainConfig { steps: 11, ..decayed.clone() }, &rows, &c, &prov(), &TrainOptions::default()).unwrap_err().to_string();
    assert!(err.contains("--steps 6 -> 11") && err.contains("step 5,") && err.contains("learning rate"), "{err}");
    // Before the decay starts, it may still grow: killed at step 2 of 6 (decay from step 3),
    // resumed with --steps 11 (decay from step 5), as a run started with 11.
    let (e, f) = (tmpdir("extend-e"), tmpdir("extend-f"));
    let opts = TrainOptions { restart: false, stop_after: Some(2) };
    train::train(&TrainConfig { checkpoint_every: 2, ..decayed.clone() }, &rows, &e, &prov(), &opts).unwrap();
    let grown = train::train(&TrainConfig { steps: 11, ..decayed.clone() }, &rows, &e, &prov(), &TrainOptions::default()).unwrap();
    let started = train::train(&TrainConfig { steps: 11, ..decayed }, &rows, &f, &prov(), &TrainOptions::default()).unwrap();
    assert_eq!(all_params(&grown), all_params(&started));
    for dir in [a, b, c, e, f] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

// ---------------------------------------------------------------- stores, analysis, CLI

/// Writes a w x h PNG of one colour.
fn png(path: &Path, rgb: [u8; 3]) {
    image::RgbImage::from_pixel(8, 6, image::Rgb(rgb)).save(path).unwrap();
}

fn manifest(images: Vec<ImageEntry>, pooling: &str) -> Manifest {
    Manifest {
        format: STORE_FORMAT.into(),
        model: "tiny-unet".into(),
        model_config_hash: "0".into(),
        layers: vec!["mid".into()],
        timesteps: vec![25],
        pooling: pooling.into(),
        dtype: "f32".into(),
        seed: 1,
        settings: Default::default(),
        images,
        class_names: (0..5).map(|c| format!("class{c}")).collect(),
        feature_shapes: Default::default(),
        shards: vec![],
        failures: vec![],
    }
}

/// A labelled store of mean-pooled features [labels.len(), d] in dir/store, with a small PNG
/// per image in dir (absolute paths in the manifest), every image in split `train`.
fn tiny_store(dir: &Path, labels: &[i64], feats: &[f32], d: usize) {
    let imgs: Vec<ImageEntry> = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let p = dir.join(format!("img{i}.png"));
            png(&p, [(i * 10) as u8, 100, 200]);
            ImageEntry { path: p.display().to_string(), label: l, split: "train".into(), caption: None, prompt: None }
        })
        .collect();
    let n = imgs.len();
    let mut w = FeatureStoreWriter::create_or_resume(dir.join("store"), manifest(imgs, "mean")).unwrap();
    let x = Tensor::from_vec(feats.to_vec(), [n, d], &Device::Cpu).unwrap();
    w.write_shard(0, n, &[(("mid".into(), 25), x)], &[]).unwrap();
}

/// An SAE on d = 3 whose latent j's pre-activation is exactly feature j (W_enc = I plus a zero
/// column, b = 0), so the dense activations are the features themselves.
fn identity_sae(dir: &Path) {
    let (d, n) = (3, 4);
    let mut we = vec![0.0f32; d * n];
    for i in 0..d {
        we[i * n + i] = 1.0;
    }
    let mut wd = vec![0.0f32; n * d];
    for j in 0..n {
        wd[j * d + j % d] = 1.0;
    }
    let params = SaeParams {
        w_enc: Tensor::from_vec(we, [d, n], &Device::Cpu).unwrap(),
        b_enc: Tensor::zeros([n], DType::F32, &Device::Cpu).unwrap(),
        w_dec: Tensor::from_vec(wd, [n, d], &Device::Cpu).unwrap(),
        b_dec: Tensor::zeros([d], DType::F32, &Device::Cpu).unwrap(),
    };
    let sae = Sae::from_params(SaeConfig { d_in: d, d_sae: n, k: 2, relu: false, input_scale: 1.0 }, params).unwrap();
    let info = checkpoint::RevelioInfo {
        format: checkpoint::FORMAT.into(),
        relu: false,
        input_scale: 1.0,
        provenance: Provenance { layer: Some("mid".into()), timestep: Some(25), ..prov() },
        train: serde_json::Value::Null,
        steps_done: 0,
        samples_seen: 0,
    };
    checkpoint::save_sae(dir, &sae, &info).unwrap();
}

fn revelio_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_revelio"))
}

/// Every `src="..."` in an HTML page.
/// The grids of a report's latents (latents.json), each checked to be linked from its latent's
/// page data in the explorer.
fn linked_grids(report: &std::path::Path) -> Vec<String> {
    let latents: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(report.join("latents.json")).unwrap()).unwrap();
    let mut grids = Vec::new();
    for l in latents.as_array().unwrap().iter().filter(|l| l["grid"].is_string()) {
        let g = l["grid"].as_str().unwrap().to_string();
        let page = std::fs::read_to_string(report.join(format!("data/latents/{:06}.js", l["id"].as_u64().unwrap()))).unwrap();
        assert!(page.contains(&g), "the page of latent {} does not link {g}", l["id"]);
        grids.push(g);
    }
    grids
}

#[test]
fn analysis_finds_the_top_images_and_revelios_sigma_label() {
    let dir = tmpdir("analysis");
    // 13 images, d = 3. Latent 0 = feature 0: positive on images 0..12 (12 images, values
    // 12, 11, ..., 1 so image 0 is the top), latent 1 = feature 1: positive on images 0..5 only
    // (6 images: not > 10, score 0), latent 2 = feature 2: negative everywhere (dead).
    let n_img = 13;
    let labels: Vec<i64> = vec![0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 0, 4];
    let mut feats = vec![0.0f32; n_img * 3];
    for i in 0..n_img {
        feats[i * 3] = if i < 12 { (12 - i) as f32 } else { 0.0 };
        feats[i * 3 + 1] = if i < 6 { (i + 1) as f32 } else { -1.0 };
        feats[i * 3 + 2] = -1.0;
    }
    tiny_store(&dir, &labels, &feats, 3);
    identity_sae(&dir.join("sae"));
    let out = dir.join("report");
    let res = revelio_bin()
        .args(["sae", "analyze", "--device", "cpu", "--sae"])
        .arg(dir.join("sae"))
        .arg("--features")
        .arg(dir.join("store"))
        .args(["--list", "4", "--grids", "2", "--thumb", "16"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let latents: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("latents.json")).unwrap()).unwrap();
    // Ranking: latent 0 (score 6.5 = mean of 12..1) first, then latents 1, 2, 3 at score 0 by id.
    let ids: Vec<u64> = latents.as_array().unwrap().iter().map(|l| l["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![0, 1, 2, 3]);
    let l0 = &latents[0];
    assert_eq!(l0["count"], 12);
    assert!((l0["mean_act"].as_f64().unwrap() - 6.5).abs() < 1e-6);
    let top: Vec<u64> = l0["top"].as_array().unwrap().iter().map(|t| t["image"].as_u64().unwrap()).collect();
    assert_eq!(top, (0..10).collect::<Vec<u64>>());
    // sigma of labels 0,1,2,3,4,0,1,2,3,4: mean 2, sum of squares 20, unbiased var 20/9.
    let sigma0 = (20.0f64 / 9.0).sqrt();
    assert!((l0["sigma"].as_f64().unwrap() - sigma0).abs() < 1e-6);
    assert_eq!(l0["majority"].as_f64().unwrap(), 0.2);
    // Latent 1: images 5, 4, 3, 2, 1, 0 by value, then the zero-activation ties by index (6..9).
    let top1: Vec<u64> = latents[1]["top"].as_array().unwrap().iter().map(|t| t["image"].as_u64().unwrap()).collect();
    assert_eq!(top1, vec![5, 4, 3, 2, 1, 0, 6, 7, 8, 9]);
    // d_sae = 4 < 100: Revelio's N list is empty, so average_stds.json is {}.
    assert_eq!(std::fs::read_to_string(out.join("average_stds.json")).unwrap().trim(), "{}");
    // The latents' pages link the two grids, which exist and are PNGs of a row of 10 tiles (the
    // active top images: 10 of latent 0, 6 of latent 1).
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    let links = linked_grids(&out);
    assert_eq!(links, vec!["grids/latent_000000.png", "grids/latent_000001.png"]);
    for l in &links {
        let img = image::open(out.join(l)).unwrap();
        assert_eq!((img.width(), img.height()), (10 * 16 + 11 * 2, 16 + 2 * 2));
    }
    assert!(html.starts_with("<!DOCTYPE html>") && std::fs::read_to_string(out.join("data/index.js")).unwrap().contains("class0"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigma_label_averages_follow_revelios_ranking() {
    use revelio::analysis::sigma;
    // 250 latents: latent j fires on 11 + j % 3 images with mean activation 1000 - j (so the
    // ranking is by id), except every 7th, which fires on 10 images only (score 0, ranked last).
    let n = 250;
    let count: Vec<u64> = (0..n).map(|j| if j % 7 == 0 { 10 } else { 11 + j as u64 % 3 }).collect();
    let sum: Vec<f32> = (0..n).map(|j| (1000 - j) as f32 * count[j] as f32).collect();
    let scores = sigma::revelio_scores(&count, &sum, 5000);
    let ranked = sigma::ranking(&scores);
    let live: Vec<usize> = (0..n).filter(|j| j % 7 != 0).collect();
    assert_eq!(&ranked[..live.len()], &live[..]);
    // Top-10 labels: latent j's are j % 5 repeated, except one image of class 9.
    let labels: Vec<Vec<i64>> = (0..n).map(|j| { let mut l = vec![(j % 5) as i64; 10]; l[0] = 9; l }).collect();
    let av = sigma::averages(&ranked, &labels, &sigma::top_counts(n));
    assert_eq!(av.iter().map(|a| a.n).collect::<Vec<_>>(), vec![100, 200]);
    // By hand: std of nine c's and one 9 = |9 - c| * sqrt(0.1 * 0.9 * 10 / 9) = |9 - c| / sqrt(10).
    let hand = |nn: usize| ranked[..nn].iter().map(|&j| (9.0 - (j % 5) as f64) / 10f64.sqrt()).sum::<f64>() / nn as f64;
    for a in &av {
        assert!((a.sigma_label - hand(a.n)).abs() < 1e-6, "N {}: {} vs {}", a.n, a.sigma_label, hand(a.n));
        assert!((a.majority_fraction - 0.9).abs() < 1e-12);
    }
}

#[test]
fn cli_trains_evaluates_encodes_and_reports_on_a_store() {
    let dir = tmpdir("cli");
    let n_img = 40;
    let labels: Vec<i64> = (0..n_img).map(|i| (i % 5) as i64).collect();
    let feats: Vec<f32> = (0..n_img * 4).map(|e| revelio::rng::normal(5, e as u64) + if e % 4 == (e / 4) % 4 { 3.0 } else { 0.0 }).collect();
    tiny_store(&dir, &labels, &feats, 4);
    let store = dir.join("store");
    let out = dir.join("sae");
    let run = |args: &[&str]| {
        let res = revelio_bin().args(args).output().unwrap();
        assert!(res.status.success(), "{args:?}: {}", String::from_utf8_lossy(&res.stderr));
        String::from_utf8(res.stdout).unwrap()
    };
    let s = |p: &Path| p.display().to_string();
    run(&["sae", "train", "--device", "cpu", "--features", &s(&store), "--layer", "mid", "--timestep", "25", "--k", "2", "--expansion", "4", "--batch", "16", "--steps", "30", "--warmup", "5", "--holdout", "0.25", "--out", &s(&out)]);
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("cfg.json")).unwrap()).unwrap();
    assert_eq!((cfg["d_in"].as_u64(), cfg["d_sae"].as_u64(), cfg["k"].as_u64()), (Some(4), Some(16), Some(2)));
    assert_eq!(cfg["architecture"], "topk");
    assert_eq!(cfg["hook_name"], "mid");
    assert_eq!(cfg["revelio"]["provenance"]["holdout_images"].as_array().unwrap().len(), 10);
    let eval = run(&["sae", "eval", "--device", "cpu", "--sae", &s(&out), "--json", &s(&dir.join("eval.json"))]);
    assert!(eval.contains("rows 10") && eval.contains("fvu"), "{eval}");
    let ev: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("eval.json")).unwrap()).unwrap();
    assert_eq!(ev["frequency"].as_array().unwrap().len(), 16);
    run(&["sae", "encode", "--device", "cpu", "--sae", &s(&out), "--out", &s(&dir.join("codes.safetensors"))]);
    let codes = revelio::io::SafeTensorsFile::open(dir.join("codes.safetensors")).unwrap();
    assert_eq!(codes.load("indices", DType::I32, &Device::Cpu).unwrap().dims(), &[40, 2]);
    assert_eq!(codes.load("image", DType::I64, &Device::Cpu).unwrap().to_vec::<i64>().unwrap(), (0..40).collect::<Vec<i64>>());
    run(&["sae", "analyze", "--device", "cpu", "--sae", &s(&out), "--rank-by", "code", "--grids", "3", "--thumb", "12", "--out", &s(&dir.join("report"))]);
    // A grid for each of the first 3 latents that is active on some image (a dead one has
    // nothing to show).
    let links = linked_grids(&dir.join("report"));
    let latents: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report/latents.json")).unwrap()).unwrap();
    let active = latents.as_array().unwrap()[..3].iter().filter(|l| l["count"].as_u64().unwrap() > 0).count();
    assert!(active >= 2 && links.len() == active, "{active} active, grids {links:?}");
    for l in links {
        assert!(dir.join("report").join(&l).is_file(), "{l} is linked but missing");
    }
    // Rerunning the finished training resumes at its end and changes nothing.
    let before = std::fs::read(out.join(checkpoint::WEIGHTS)).unwrap();
    run(&["sae", "train", "--device", "cpu", "--features", &s(&store), "--layer", "mid", "--timestep", "25", "--k", "2", "--expansion", "4", "--batch", "16", "--steps", "30", "--warmup", "5", "--holdout", "0.25", "--out", &s(&out)]);
    assert_eq!(before, std::fs::read(out.join(checkpoint::WEIGHTS)).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tmpdir("bad");
    let labels: Vec<i64> = vec![0, 1, 2, 3];
    let mut feats: Vec<f32> = (0..12).map(|e| e as f32).collect();
    tiny_store(&dir, &labels, &feats, 3);
    let store = revelio::features::FeatureStore::open(dir.join("store")).unwrap();
    // A layer the store does not have.
    let err = data::from_store(&store, "up.1", 25, &[0, 1], RowKind::Image, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("up.1") && err.contains("mid"), "{err}");
    // Per-position rows from a mean-pooled store.
    let err = data::from_store(&store, "mid", 25, &[0], RowKind::Position, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("mean-pooled"), "{err}");
    // An SAE for d = 3 on d = 4 features.
    identity_sae(&dir.join("sae"));
    let (sae, _) = checkpoint::load_sae(&dir.join("sae"), &Device::Cpu).unwrap();
    let err = sae.encode(&randn(&[2, 4], 1)).unwrap_err().to_string();
    assert!(err.contains("d = 4") && err.contains("d_in = 3"), "{err}");
    // NaN in the features names the image.
    feats[7] = f32::NAN;
    let nan_dir = tmpdir("nan");
    tiny_store(&nan_dir, &labels, &feats, 3);
    let store = revelio::features::FeatureStore::open(nan_dir.join("store")).unwrap();
    let err = data::from_store(&store, "mid", 25, &[0, 1, 2, 3], RowKind::Image, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("image 2") && err.contains("non-finite"), "{err}");
    // Training: d mismatch between a checkpoint and new features is refused by shape.
    let x4 = rows_of(randn(&[8, 4], 2));
    let out = dir.join("run");
    train::train(&small_cfg(4, 8, 2, 2), &x4, &out, &prov(), &TrainOptions::default()).unwrap();
    let x5 = rows_of(randn(&[8, 5], 3));
    assert!(train::train(&small_cfg(5, 8, 2, 2), &x5, &out, &prov(), &TrainOptions::default()).is_err());
    // Bad options.
    assert!(train::train(&TrainConfig { k: 9, ..small_cfg(4, 8, 2, 2) }, &x4, &dir.join("r2"), &prov(), &TrainOptions::default()).is_err());
    let res = revelio_bin().args(["sae", "train", "--device", "cpu", "--out"]).arg(dir.join("r3")).output().unwrap();
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(!res.status.success() && err.contains("--features"), "{err}");
    // A folder that is not an SAE's: named, with what would make one.
    let err = checkpoint::load_sae(&dir.join("store"), &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("not an SAE folder") && err.contains("sae train"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&nan_dir).unwrap();
}

#[test]
fn input_scaling_makes_the_mean_squared_norm_d_and_is_saved() {
    let x = revelio::ops::scale(&randn(&[300, 8], 80), 7.0).unwrap();
    let out = tmpdir("scale");
    let cfg = TrainConfig { scale_inputs: true, ..small_cfg(8, 16, 2, 3) };
    let st = train::train(&cfg, &rows_of(x.clone()), &out, &prov(), &TrainOptions::default()).unwrap();
    let s = st.sae.cfg.input_scale as f64;
    let v = x.to_f32_vec().unwrap();
    let mean_sq = v.iter().map(|&a| (a as f64 * s).powi(2)).sum::<f64>() / 300.0;
    assert!((mean_sq - 8.0).abs() < 1e-3, "E||x||^2 = {mean_sq}");
    let (back, _) = checkpoint::load_sae(&out, &Device::Cpu).unwrap();
    assert_eq!(back.cfg.input_scale, st.sae.cfg.input_scale);
    let f = revelio::io::SafeTensorsFile::open(out.join(checkpoint::WEIGHTS)).unwrap();
    assert!(f.contains("input_scale"));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn per_position_features_rank_images_by_their_mean_and_grids_show_where_a_latent_fires() {
    // 12 images with [C = 3, 2, 2] maps: channel 0 is i + 1 at the top-left position and 0
    // elsewhere, channels 1 and 2 are -1. With the identity SAE, latent 0's image activation is
    // the mean over positions, (i + 1) / 4, so image 11 leads; its heat map is the top-left.
    let dir = tmpdir("positions");
    let n_img = 12;
    let imgs: Vec<ImageEntry> = (0..n_img)
        .map(|i| {
            let p = dir.join(format!("img{i}.png"));
            png(&p, [(i * 10) as u8, 100, 200]);
            ImageEntry { path: p.display().to_string(), label: (i % 3) as i64, split: "train".into(), caption: None, prompt: None }
        })
        .collect();
    let mut w = FeatureStoreWriter::create_or_resume(dir.join("store"), manifest(imgs, "none")).unwrap();
    let mut feats = vec![0.0f32; n_img * 12];
    for i in 0..n_img {
        feats[i * 12] = (i + 1) as f32;
        for e in 4..12 {
            feats[i * 12 + e] = -1.0;
        }
    }
    w.write_shard(0, n_img, &[(("mid".into(), 25), Tensor::from_vec(feats, [n_img, 3, 2, 2], &Device::Cpu).unwrap())], &[]).unwrap();
    let store = revelio::features::FeatureStore::open(dir.join("store")).unwrap();
    let rows = data::from_store(&store, "mid", 25, &[0, 1], RowKind::Position, &Device::Cpu).unwrap();
    assert_eq!((rows.len(), rows.per_image, rows.map_hw), (8, 4, Some((2, 2))));
    assert_eq!(rows.batch(&[0, 4]).unwrap().to_f32_vec().unwrap(), vec![1.0, -1.0, -1.0, 2.0, -1.0, -1.0]);
    let pooled = data::from_store(&store, "mid", 25, &[3], RowKind::Image, &Device::Cpu).unwrap();
    assert_eq!(pooled.x.to_f32_vec().unwrap(), vec![1.0, -1.0, -1.0]);

    identity_sae(&dir.join("sae"));
    let out = dir.join("report");
    let res = revelio_bin()
        .args(["sae", "analyze", "--device", "cpu", "--rows", "position", "--list", "2", "--grids", "1", "--thumb", "16", "--sae"])
        .arg(dir.join("sae"))
        .arg("--features")
        .arg(dir.join("store"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    let latents: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("latents.json")).unwrap()).unwrap();
    let top: Vec<u64> = latents[0]["top"].as_array().unwrap().iter().map(|t| t["image"].as_u64().unwrap()).collect();
    assert_eq!(latents[0]["id"], 0);
    assert_eq!(top, (2..12).rev().collect::<Vec<u64>>());
    assert!((latents[0]["top"][0]["activation"].as_f64().unwrap() - 3.0).abs() < 1e-6);
    let grid = image::open(out.join("grids/latent_000000.png")).unwrap().to_rgb8();
    // Tile 0 (image 11, colour [110, 100, 200]) starts at (2, 2): red at its top-left corner,
    // its own colour at the bottom-right.
    let (hot, cold) = (grid.get_pixel(2, 2), grid.get_pixel(17, 17));
    assert!(hot[0] > 180 && hot[1] < 60, "{hot:?}");
    assert_eq!(cold.0, [110, 100, 200]);
    std::fs::remove_dir_all(&dir).unwrap();
}
