//! The classifier: shapes and parameter counts, PyTorch's inits, the whole model's gradients
//! against central differences of an f64 twin, parity with a PyTorch DiffusionFeatureClassifier_V4
//! (tools/reference/make_diffc_fixtures.py), and the state dict under PyTorch's names.

use crate::common::*;
use revelio::diffc::model::{bias_bound, dropout_seed, kaiming_uniform_bound, DiffcClassifier, DiffcConfig, BN_EPS, BN_MOMENTUM};
use revelio::diffc::train::{cosine_lr, AdamW};
use revelio::ops::{cross_entropy, cross_entropy_backward, AdamConfig};
use revelio::{rng, DType, Device, Tensor};
use std::collections::HashMap;

#[test]
fn reference_layout_and_parameter_counts() {
    // Spec section 3: 40,158,245 parameters for Cin 1280 and 37 classes, 34,260,005 for Cin 640.
    assert_eq!(DiffcConfig::reference(1280, 37, 0.5).num_params(), 40_158_245);
    assert_eq!(DiffcConfig::reference(640, 37, 0.5).num_params(), 34_260_005);
    let c = DiffcConfig::reference(1280, 37, 0.0);
    assert_eq!(c.block_sizes(8, 8), vec![(8, 8), (4, 4), (2, 2), (1, 1)]);
    assert_eq!(c.block_sizes(16, 16), vec![(16, 16), (8, 8), (4, 4), (2, 2)]);
    assert_eq!(c.block_sizes(64, 64), vec![(64, 64), (32, 32), (16, 16), (8, 8)]);
    // The model counts its tensors the same way.
    let mut m =
        DiffcClassifier::new(DiffcConfig { in_channels: 5, num_classes: 3, widths: vec![4, 6], dropout: 0.0 }, 1, &Device::Cpu).unwrap();
    let n: usize = m.params_mut().iter().map(|p| p.numel()).sum();
    assert_eq!(n, m.config.num_params());
    assert!(DiffcConfig { in_channels: 5, num_classes: 1, widths: vec![4], dropout: 0.0 }.validate().is_err());
    assert!(DiffcConfig { in_channels: 5, num_classes: 3, widths: vec![], dropout: 0.0 }.validate().is_err());
    assert!(DiffcConfig { in_channels: 5, num_classes: 3, widths: vec![4], dropout: 1.0 }.validate().is_err());
}

#[test]
fn init_follows_pytorch_defaults() {
    // kaiming_uniform_(a = sqrt(5)) reduces to 1 / sqrt(fan_in).
    for fan in [9, 576, 11_520, 1024] {
        assert!((kaiming_uniform_bound(fan) as f64 * (fan as f64).sqrt() - 1.0).abs() < 1e-6);
        assert_eq!(bias_bound(fan), (1.0 / (fan as f64).sqrt()) as f32);
    }
    let cfg = DiffcConfig { in_channels: 64, num_classes: 10, widths: vec![32, 32], dropout: 0.5 };
    let m = DiffcClassifier::new(cfg.clone(), 7, &Device::Cpu).unwrap();
    let check = |what: &str, t: &Tensor, bound: f32| {
        let v = t.to_f32_vec().unwrap();
        let max = v.iter().fold(0f32, |a, &x| a.max(x.abs()));
        assert!(max <= bound && max > 0.95 * bound, "{what}: max |w| {max}, bound {bound}");
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        let want = (bound as f64).powi(2) / 3.0;
        assert!(mean.abs() < 0.1 * bound as f64 && (var / want - 1.0).abs() < 0.15, "{what}: mean {mean}, var {var} vs {want}");
    };
    check("conv1.weight", &m.blocks[0].conv_weight, 1.0 / (64.0f32 * 9.0).sqrt());
    check("conv2.weight", &m.blocks[1].conv_weight, 1.0 / (32.0f32 * 9.0).sqrt());
    check("conv1.bias", &m.blocks[0].conv_bias, 1.0 / (64.0f32 * 9.0).sqrt());
    check("fc.weight", &m.fc_weight, 1.0 / 32f32.sqrt());
    assert!(m.blocks[0].bn_weight.to_f32_vec().unwrap().iter().all(|&v| v == 1.0));
    assert!(m.blocks[0].bn_bias.to_f32_vec().unwrap().iter().all(|&v| v == 0.0));
    assert!(m.input_bn.running_var.to_f32_vec().unwrap().iter().all(|&v| v == 1.0));
    let again = DiffcClassifier::new(cfg.clone(), 7, &Device::Cpu).unwrap();
    assert_eq!(m.fc_weight.to_f32_vec().unwrap(), again.fc_weight.to_f32_vec().unwrap());
    let other = DiffcClassifier::new(cfg, 8, &Device::Cpu).unwrap();
    assert_ne!(m.fc_weight.to_f32_vec().unwrap(), other.fc_weight.to_f32_vec().unwrap());
}

// ---------------------------------------------------------------- the f64 twin

/// The classifier in f64, written independently of src/: train-mode BN (biased variance), ReLU,
/// dropout with revelio's masks, global average pool, linear, mean cross-entropy.
struct Twin {
    cfg: DiffcConfig,
    dims: [usize; 4],
    seed: u64,
}

/// Shapes of the trainable parameters, in `param_names` order.
fn param_shapes(cfg: &DiffcConfig) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut c = cfg.in_channels;
    for &w in &cfg.widths {
        out.extend([vec![w, c, 3, 3], vec![w], vec![w], vec![w]]);
        c = w;
    }
    out.extend([vec![cfg.num_classes, c], vec![cfg.num_classes]]);
    out
}

fn conv3x3(x: &[f64], [n, c, h, w]: [usize; 4], wt: &[f64], b: &[f64], cout: usize, s: usize) -> (Vec<f64>, [usize; 4]) {
    let (oh, ow) = ((h - 1) / s + 1, (w - 1) / s + 1);
    let mut y = vec![0.0; n * cout * oh * ow];
    for ni in 0..n {
        for o in 0..cout {
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = b[o];
                    for ci in 0..c {
                        for ki in 0..3 {
                            for kj in 0..3 {
                                let (yy, xx) = ((i * s + ki) as isize - 1, (j * s + kj) as isize - 1);
                                if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                                    acc += x[((ni * c + ci) * h + yy as usize) * w + xx as usize] * wt[((o * c + ci) * 3 + ki) * 3 + kj];
                                }
                            }
                        }
                    }
                    y[((ni * cout + o) * oh + i) * ow + j] = acc;
                }
            }
        }
    }
    (y, [n, cout, oh, ow])
}

/// Train-mode batch norm over N and the spatial dims; (y, per-channel mean, biased variance).
fn bn_train(x: &[f64], [n, c, h, w]: [usize; 4], gamma: Option<&[f64]>, beta: Option<&[f64]>) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let s = h * w;
    let mut y = vec![0.0; x.len()];
    let (mut means, mut vars) = (vec![0.0; c], vec![0.0; c]);
    for ci in 0..c {
        let idx: Vec<usize> = (0..n).flat_map(|ni| (0..s).map(move |k| (ni * c + ci) * s + k)).collect();
        let mean = idx.iter().map(|&i| x[i]).sum::<f64>() / idx.len() as f64;
        let var = idx.iter().map(|&i| (x[i] - mean).powi(2)).sum::<f64>() / idx.len() as f64;
        for &i in &idx {
            y[i] = (x[i] - mean) / (var + BN_EPS as f64).sqrt() * gamma.map_or(1.0, |g| g[ci]) + beta.map_or(0.0, |b| b[ci]);
        }
        (means[ci], vars[ci]) = (mean, var);
    }
    (y, means, vars)
}

fn keep(seed: u64, i: usize, p: f32) -> f64 {
    if p == 0.0 || rng::uniform(seed, i as u64) >= p {
        1.0 / (1.0 - p as f64)
    } else {
        0.0
    }
}

impl Twin {
    /// (logits [B, K], mean cross-entropy) for flat parameters `p` (param_names order).
    fn forward(&self, x: &[f64], p: &[f64], labels: &[i64]) -> (Vec<f64>, f64) {
        let shapes = param_shapes(&self.cfg);
        let mut offs = vec![0];
        for s in &shapes {
            offs.push(offs.last().unwrap() + s.iter().product::<usize>());
        }
        let t = |k: usize| &p[offs[k]..offs[k + 1]];
        let pd = self.cfg.dropout;
        let mut h = bn_train(x, self.dims, None, None).0;
        let mut d = self.dims;
        for (i, &w) in self.cfg.widths.iter().enumerate() {
            let (c, cd) = conv3x3(&h, d, t(4 * i), t(4 * i + 1), w, if i == 0 { 1 } else { 2 });
            let (bn, _, _) = bn_train(&c, cd, Some(t(4 * i + 2)), Some(t(4 * i + 3)));
            let s = cd[2] * cd[3];
            let seed = dropout_seed(self.seed, i);
            h = bn.iter().enumerate().map(|(j, &v)| v.max(0.0) * keep(seed, j / s, pd)).collect();
            d = cd;
        }
        let [b, c, hh, ww] = d;
        let fc_seed = dropout_seed(self.seed, self.cfg.depth());
        let pooled: Vec<f64> =
            (0..b * c).map(|r| h[r * hh * ww..(r + 1) * hh * ww].iter().sum::<f64>() / (hh * ww) as f64 * keep(fc_seed, r, pd)).collect();
        let depth = self.cfg.depth();
        let (fw, fb, k) = (t(4 * depth), t(4 * depth + 1), self.cfg.num_classes);
        let logits: Vec<f64> =
            (0..b * k).map(|r| fb[r % k] + (0..c).map(|j| pooled[(r / k) * c + j] * fw[(r % k) * c + j]).sum::<f64>()).collect();
        let loss = (0..b)
            .map(|i| {
                let row = &logits[i * k..(i + 1) * k];
                let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                lse - row[labels[i] as usize]
            })
            .sum::<f64>()
            / b as f64;
        (logits, loss)
    }
}

fn flat_params(m: &mut DiffcClassifier) -> Vec<f64> {
    m.params_mut().iter().flat_map(|t| to_f64(&t.to_f32_vec().unwrap())).collect()
}

/// The whole model's gradients (every parameter) against central differences of the f64 twin,
/// with dropout off and on; the logits against the twin's.
#[test]
fn gradients_match_finite_differences() {
    for (p, seed) in [(0.0f32, 11u64), (0.3, 12)] {
        let cfg = DiffcConfig { in_channels: 3, num_classes: 4, widths: vec![4, 5, 3], dropout: p };
        let dims = [3, 3, 6, 6];
        let x = affine_t(&randn(&dims, 100 + seed), 1.5, 0.5);
        let labels = vec![2i64, 0, 3];
        let mut model = DiffcClassifier::new(cfg.clone(), seed, &Device::Cpu).unwrap();
        // Move BN weights and biases off 1 and 0 so their gradients are exercised in general position.
        for (i, b) in model.blocks.iter_mut().enumerate() {
            b.bn_weight = uniform(b.bn_weight.dims(), 0.5, 1.5, 200 + i as u64);
            b.bn_bias = uniform(b.bn_bias.dims(), -0.3, 0.3, 300 + i as u64);
        }
        let params = flat_params(&mut model);
        let fwd_seed = 77 + seed;
        let twin = Twin { cfg: cfg.clone(), dims, seed: fwd_seed };
        let xs = to_f64(&x.to_f32_vec().unwrap());

        let y = Tensor::from_vec(labels.clone(), [3], &Device::Cpu).unwrap();
        let (logits, cache) = model.forward_train(&x, fwd_seed).unwrap();
        let (want_logits, _) = twin.forward(&xs, &params, &labels);
        assert_close(&format!("p={p} logits"), &logits.to_f32_vec().unwrap(), &f64_to_f32(&want_logits), 1e-5);
        let (_, probs) = cross_entropy(&logits, &y).unwrap();
        let grads = model.backward(&cross_entropy_backward(&probs, &y, 1.0).unwrap(), &cache).unwrap();

        let fd = fd_grad(&|q: &[f64]| twin.forward(&xs, q, &labels).1, &params, 1e-6);
        let mut off = 0;
        for (name, g) in grads.named() {
            let got = g.to_f32_vec().unwrap();
            let want = &fd[off..off + got.len()];
            off += got.len();
            if name.starts_with("conv") && name.ends_with(".bias") {
                // A bias before train-mode BN cancels out of the loss: its gradient is zero
                // (ours carries f32 rounding noise).
                let worst = got.iter().map(|v| v.abs()).fold(0.0, f32::max);
                assert!(worst < 1e-5 && want.iter().all(|v| v.abs() < 1e-6), "p={p} {name}: {got:?} vs {want:?}");
            } else {
                assert_close(&format!("p={p} d{name}"), &got, &f64_to_f32(want), 1e-4);
            }
        }
        assert_eq!(off, fd.len());
    }
}

fn affine_t(t: &Tensor, mul: f32, add: f32) -> Tensor {
    revelio::ops::affine(t, mul, add).unwrap()
}

/// Running statistics after a train step, and the eval-mode forward, against the twin's
/// arithmetic: running = 0.9 running + 0.1 batch (unbiased variance).
#[test]
fn running_statistics_follow_torch() {
    let cfg = DiffcConfig { in_channels: 2, num_classes: 3, widths: vec![3], dropout: 0.5 };
    let mut m = DiffcClassifier::new(cfg, 3, &Device::Cpu).unwrap();
    let x = randn(&[4, 2, 3, 3], 5);
    let xs = to_f64(&x.to_f32_vec().unwrap());
    let (_, mean, var) = bn_train(&xs, [4, 2, 3, 3], None, None);
    m.forward_train(&x, 1).unwrap();
    assert_eq!(m.num_batches_tracked, 1);
    let rm = m.input_bn.running_mean.to_f32_vec().unwrap();
    let rv = m.input_bn.running_var.to_f32_vec().unwrap();
    for c in 0..2 {
        let mom = BN_MOMENTUM as f64;
        assert!((rm[c] as f64 - mom * mean[c]).abs() < 1e-6);
        assert!((rv[c] as f64 - ((1.0 - mom) + mom * var[c] * 36.0 / 35.0)).abs() < 1e-6);
    }
    // Eval mode uses those statistics and no dropout: twice the same logits.
    let a = m.forward_eval(&x).unwrap().to_f32_vec().unwrap();
    assert_eq!(a, m.forward_eval(&x).unwrap().to_f32_vec().unwrap());
    let err = m.forward_eval(&randn(&[4, 3, 3, 3], 6)).unwrap_err().to_string();
    assert!(err.contains("[4, 3, 3, 3]") && err.contains("takes 2"), "{err}");
}

// ---------------------------------------------------------------- PyTorch parity

fn prefixed(f: &revelio::io::SafeTensorsFile, prefix: &str) -> HashMap<String, Tensor> {
    f.keys()
        .into_iter()
        .filter_map(|k| {
            k.strip_prefix(prefix).map(String::from).map(|name| {
                (name, f.load(&k, if k.ends_with("num_batches_tracked") { DType::I64 } else { DType::F32 }, &Device::Cpu).unwrap())
            })
        })
        .collect()
}

/// Forward (eval and train mode with dropout on), loss, every gradient, running statistics and one
/// AdamW step against torch, all within 1e-4 relative L2.
#[test]
fn matches_pytorch_reference() {
    let f = fixture("diffc/diffc.safetensors");
    let meta = f.metadata();
    let (p, seed): (f32, u64) = (meta["p"].parse().unwrap(), meta["seed"].parse().unwrap());
    let (lr, wd): (f32, f32) = (meta["lr"].parse().unwrap(), meta["weight_decay"].parse().unwrap());
    let mut model = DiffcClassifier::from_state_dict(&prefixed(&f, "init."), p, &Device::Cpu, "fixture").unwrap();
    assert_eq!(model.config.widths, vec![8, 8, 8, 8]);
    let x = fixture_tensor(&f, "x");
    let labels = f.load("labels", DType::I64, &Device::Cpu).unwrap();

    assert_close(
        "eval logits",
        &model.forward_eval(&x).unwrap().to_f32_vec().unwrap(),
        &fixture_tensor(&f, "eval.logits").to_f32_vec().unwrap(),
        1e-4,
    );
    let tracked = model.num_batches_tracked;
    let (logits, cache) = model.forward_train(&x, seed).unwrap();
    assert_eq!(model.num_batches_tracked, tracked + 1);
    assert_close("train logits", &logits.to_f32_vec().unwrap(), &fixture_tensor(&f, "train.logits").to_f32_vec().unwrap(), 1e-4);
    let (loss, probs) = cross_entropy(&logits, &labels).unwrap();
    assert_close("loss", &[loss.to_scalar().unwrap()], &[fixture_tensor(&f, "train.loss").to_scalar().unwrap()], 1e-5);
    for (name, t) in model.state_dict().unwrap() {
        if name.contains("running") {
            assert_close(
                &format!("{name} after the train forward"),
                &t.to_f32_vec().unwrap(),
                &fixture_tensor(&f, &format!("after_train.{name}")).to_f32_vec().unwrap(),
                1e-5,
            );
        }
    }
    let grads = model.backward(&cross_entropy_backward(&probs, &labels, 1.0).unwrap(), &cache).unwrap();
    let zero_grad = |n: &str| n.starts_with("conv") && n.ends_with(".bias");
    for (name, g) in grads.named() {
        let want = fixture_tensor(&f, &format!("grad.{name}")).to_f32_vec().unwrap();
        let got = g.to_f32_vec().unwrap();
        if zero_grad(&name) {
            // Zero in exact arithmetic (a bias before train-mode BN); both sides hold rounding noise.
            assert!(got.iter().chain(&want).all(|v| v.abs() < 1e-6), "{name}: {got:?} vs torch {want:?}");
        } else {
            assert_close(&format!("d{name}"), &got, &want, 1e-4);
        }
    }

    let before: Vec<Vec<f32>> = model.params_mut().iter().map(|t| t.to_f32_vec().unwrap()).collect();
    let mut opt = AdamW::new(&mut model).unwrap();
    opt.step(&mut model, &grads, &AdamConfig { weight_decay: wd, ..AdamConfig::adamw(lr) }).unwrap();
    let names = model.param_names();
    for ((name, t), b) in names.iter().zip(model.params_mut()).zip(&before) {
        let after = t.to_f32_vec().unwrap();
        let want = fixture_tensor(&f, &format!("step.{name}")).to_f32_vec().unwrap();
        if zero_grad(name) {
            // Adam normalises the noise to a step of up to lr either way: bound it on both sides.
            for (i, ((a, w), b0)) in after.iter().zip(&want).zip(b).enumerate() {
                let bound = lr * (1.0 + 1e-3) + lr * wd * b0.abs();
                assert!((a - b0).abs() <= bound && (w - b0).abs() <= bound, "{name}[{i}]: {b0} -> ours {a}, torch {w}");
            }
        } else {
            // Compare the updates, which are ~1e-3 of the weights.
            let d_ours: Vec<f32> = after.iter().zip(b).map(|(a, b)| a - b).collect();
            let d_torch: Vec<f32> = want.iter().zip(b).map(|(a, b)| a - b).collect();
            assert_close(&format!("AdamW update of {name}"), &d_ours, &d_torch, 1e-4);
            assert_close(&format!("{name} after AdamW"), &after, &want, 1e-6);
        }
    }
}

/// Our cosine schedule against torch's CosineAnnealingLR (T_max 90, 30 epochs: the reference run).
#[test]
fn cosine_schedule_matches_torch() {
    let f = fixture("diffc/diffc.safetensors");
    let want = fixture_tensor(&f, "cosine.lr").to_f32_vec().unwrap();
    assert_eq!(want.len(), 30);
    for (e, &w) in want.iter().enumerate() {
        let got = cosine_lr(1e-4, e, 90);
        assert!(((got - w) / w).abs() < 1e-6, "epoch {e}: {got} vs torch {w}");
    }
    assert!((cosine_lr(1e-4, 29, 90) - 7.65e-5).abs() < 1e-7);
    assert_eq!(cosine_lr(1e-4, 0, 90), 1e-4);
}

/// Save and load keep every tensor; torch's names and order; strict loading.
#[test]
fn state_dict_round_trips_under_pytorch_names() {
    let f = fixture("diffc/diffc.safetensors");
    let torch_names: std::collections::BTreeSet<String> =
        f.keys().into_iter().filter_map(|k| k.strip_prefix("init.").map(String::from)).collect();
    let mut m =
        DiffcClassifier::new(DiffcConfig { in_channels: 6, num_classes: 5, widths: vec![8; 4], dropout: 0.3 }, 9, &Device::Cpu).unwrap();
    m.forward_train(&randn(&[2, 6, 8, 8], 1), 2).unwrap();
    let ours: std::collections::BTreeSet<String> = m.state_dict().unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(ours, torch_names, "our state dict names differ from torch's");

    let dir = std::env::temp_dir().join(format!("revelio-diffc-sd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.safetensors");
    m.save(&path, HashMap::new()).unwrap();
    let back = DiffcClassifier::load(&path, 0.3, &Device::Cpu).unwrap();
    assert_eq!(back.config, m.config);
    assert_eq!(back.num_batches_tracked, 1);
    for ((k, a), (_, b)) in m.state_dict().unwrap().iter().zip(back.state_dict().unwrap().iter()) {
        if a.dtype() == DType::F32 {
            assert_eq!(a.to_f32_vec().unwrap(), b.to_f32_vec().unwrap(), "{k}");
        }
    }

    let mut sd: HashMap<String, Tensor> = m.state_dict().unwrap().into_iter().collect();
    sd.insert("bn9.weight".into(), Tensor::zeros([8], DType::F32, &Device::Cpu).unwrap());
    let err = DiffcClassifier::from_state_dict(&sd, 0.0, &Device::Cpu, "t").unwrap_err().to_string();
    assert!(err.contains("unexpected") && err.contains("bn9.weight"), "{err}");
    sd.remove("bn9.weight");
    sd.remove("bn2.running_var");
    let err = DiffcClassifier::from_state_dict(&sd, 0.0, &Device::Cpu, "t").unwrap_err().to_string();
    assert!(err.contains("bn2.running_var"), "{err}");
    sd.insert("bn2.running_var".into(), Tensor::zeros([7], DType::F32, &Device::Cpu).unwrap());
    let err = DiffcClassifier::from_state_dict(&sd, 0.0, &Device::Cpu, "t").unwrap_err().to_string();
    assert!(err.contains("bn2.running_var") && err.contains("[7]") && err.contains("[8]"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
