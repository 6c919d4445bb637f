//! Diff-C on CUDA against the CPU: one whole train step (forward in train mode with dropout,
//! loss, every gradient, running statistics) and the eval forward, for the tiny fixture layout,
//! sizes that divide nothing, and the reference's layout at SD 1.5's mid (8x8) and up.1 (32x32)
//! maps; then whole training runs, which must reach the CPU's accuracy.

use crate::common::*;
use revelio::diffc::data::FileSource;
use revelio::diffc::model::{DiffcClassifier, DiffcConfig};
use revelio::diffc::train::{train, ModelOptions, TrainConfig};
use revelio::io::save_safetensors;
use revelio::ops::{cross_entropy, cross_entropy_backward};
use revelio::{DType, Device, Tensor};

/// Whole-model tolerances. f32: the convs reduce over up to K = 1280 * 9 = 11520 products in a
/// different order on each backend (relative error ~ sqrt(K) * 2^-24 = 6e-6 per conv), and a
/// train step chains about ten such stages (four blocks forward and backward, BN rescaling
/// each), so ~2e-5; 1e-4 leaves margin. 16-bit: about five roundings of operands to 2^-9 per
/// block (input, weight, conv output, BN output, gradient), ~1e-3 rms each, over ~20 stages:
/// ~5e-3 forward and ~1e-2 for the gradients; 3e-2 leaves margin.
fn model_tol(dtype: DType) -> f64 {
    if dtype == DType::F32 {
        1e-4
    } else {
        3e-2
    }
}

/// (Cin, widths, batch, h, w).
const CASES: [(usize, &[usize], usize, usize, usize); 4] = [
    (6, &[8, 8, 8, 8], 4, 8, 8),
    (13, &[24, 40, 17], 3, 7, 9),
    (1280, &[1024, 1024, 1024, 1024], 16, 8, 8),
    (1280, &[1024, 1024, 1024, 1024], 4, 32, 32),
];

#[test]
#[ignore = "needs a CUDA GPU"]
fn train_step_matches_cpu() {
    for dtype in DType::FLOATS {
        for (i, &(cin, widths, b, h, w)) in CASES.iter().enumerate() {
            let cfg = DiffcConfig { in_channels: cin, num_classes: 37, widths: widths.to_vec(), dropout: 0.3 };
            let x = revelio::ops::affine(&randn(&[b, cin, h, w], 2100 + i as u64), 3.0, 0.7).unwrap();
            let labels = Tensor::from_vec((0..b as i64).map(|j| (j * 11 + 3) % 37).collect::<Vec<i64>>(), [b], &Device::Cpu).unwrap();
            let what = format!("diffc train step Cin {cin} widths {widths:?} x [{b}, {cin}, {h}, {w}]");
            check_cuda_vs_cpu(&what, dtype, &[x, labels], Some(model_tol(dtype)), |t| {
                let mut m = DiffcClassifier::new(cfg.clone(), 5, &t[0].device())?;
                let (logits, cache) = m.forward_train(&t[0], 9)?;
                let (loss, probs) = cross_entropy(&logits, &t[1])?;
                let grads = m.backward(&cross_entropy_backward(&probs, &t[1], 1.0)?, &cache)?;
                let mut out = vec![logits, loss];
                for (name, g) in grads.named() {
                    // Conv biases before train-mode BN have zero gradient: only noise to compare.
                    if !(name.starts_with("conv") && name.ends_with(".bias")) {
                        out.push(g.clone());
                    }
                }
                for (name, s) in m.state_dict()? {
                    if name.contains("running") {
                        out.push(s);
                    }
                }
                out.push(m.forward_eval(&t[0])?);
                Ok(out)
            });
        }
    }
}

/// 64 train and 32 test maps [8, 6, 6] of 4 classes: a fixed pattern per class plus noise.
fn synthetic_file(dir: &std::path::Path) -> std::path::PathBuf {
    let make = |n: usize, seed: u64| {
        let per = 8 * 6 * 6;
        let patterns: Vec<Vec<f32>> = (0..4).map(|j| randn(&[per], 1000 + j).to_f32_vec().unwrap()).collect();
        let eps = randn(&[n * per], seed).to_f32_vec().unwrap();
        let v: Vec<f32> = (0..n * per).map(|i| patterns[(i / per) % 4][i % per] + eps[i]).collect();
        let l: Vec<i64> = (0..n).map(|i| (i % 4) as i64).collect();
        (Tensor::from_vec(v, [n, 8, 6, 6], &Device::Cpu).unwrap(), Tensor::from_vec(l, [n], &Device::Cpu).unwrap())
    };
    let (xtr, ltr) = make(64, 1);
    let (xte, lte) = make(32, 2);
    let path = dir.join("features.safetensors");
    save_safetensors(&path, &[("train_features", &xtr), ("train_labels", &ltr), ("test_features", &xte), ("test_labels", &lte)], None)
        .unwrap();
    path
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn training_on_cuda_matches_the_cpu() {
    let dev = cuda();
    let dir = std::env::temp_dir().join(format!("revelio-gpu-diffc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = synthetic_file(&dir);
    let opts = ModelOptions { widths: vec![16, 16, 16], dropout: 0.1, num_classes: None };
    let cfg = TrainConfig {
        epochs: 12,
        cosine_epochs: 12,
        lr: 3e-3,
        weight_decay: 0.01,
        batch_size: 16,
        test_batch_size: 32,
        seed: 3,
        dtype: "f32".into(),
    };
    let on_cpu = train(&mut FileSource::open(&file).unwrap(), &opts, &cfg, &dir.join("cpu"), &Device::Cpu).unwrap();
    for dtype in ["f32", "bf16", "f16"] {
        let cfg = TrainConfig { dtype: dtype.into(), ..cfg.clone() };
        let s = train(&mut FileSource::open(&file).unwrap(), &opts, &cfg, &dir.join(dtype), &dev).unwrap();
        assert!(s.last_test_accuracy >= 0.9, "{dtype}: {s:?}");
        if dtype == "f32" {
            // The same run: losses agree closely (Adam amplifies rounding only in near-zero
            // gradients, the conv biases), accuracies exactly or within an image or two.
            assert!((s.last_train_loss - on_cpu.last_train_loss).abs() < 1e-2 * on_cpu.last_train_loss, "{s:?} vs CPU {on_cpu:?}");
            assert!((s.last_test_accuracy - on_cpu.last_test_accuracy).abs() <= 2.0 / 32.0, "{s:?} vs CPU {on_cpu:?}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
