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

/// Whole-model tolerances, per output. f32: the convs reduce over up to K = 1280 * 9 = 11520
/// products in a different order on each backend (relative error ~ sqrt(K) * 2^-24 = 6e-6 per
/// conv), and a train step chains about ten such stages (four blocks forward and backward, BN
/// rescaling each), so ~2e-5; 1e-4 leaves margin. 16-bit forward (logits, loss, running
/// statistics, eval output): about five roundings to 2^-9 per block over four blocks, ~5e-3;
/// 3e-2 leaves margin. 16-bit gradients: every activation and gradient is stored in 16 bits
/// while the CPU reference rounds only the inputs, and BN's backward (dy - mean(dy) - x^ *
/// mean(dy x^)) cancels most of dy, so the rounding noise is amplified. Measured on the
/// simulated device (Cin 320, widths 256, batch 16, 8x8; 2026-12-03, the same in every thread
/// order) the worst gradient is 4.4e-2 in f16 (bn2.bias) and 1.2e-1 in bf16, i.e. 89 and 30
/// units of the format's rounding u (2^-11, 2^-8): tens of u in both formats, as rounding noise
/// gives and a kernel bug would not. f16's larger multiple comes from underflow: with no loss
/// scaling, gradients below 6e-5 are subnormal in f16 and keep fewer bits. The bound is 100 u;
/// f16 sits close to it, so a GPU's different summation order may need a second look.
fn tol(dtype: DType, gradient: bool) -> f64 {
    match (dtype, gradient) {
        (DType::F32, _) => 1e-4,
        (_, false) => 3e-2,
        (DType::F16, true) => 100.0 * 2f64.powi(-11),
        (_, true) => 100.0 * 2f64.powi(-8),
    }
}

/// (Cin, widths, batch, h, w); small size: the reference's four-block layout at a quarter of
/// its width (Cin 320, widths 256) and batch 16 on the 8x8 map.
fn cases() -> Vec<(usize, &'static [usize], usize, usize, usize)> {
    let reference: &[usize] = &[1024, 1024, 1024, 1024];
    let mut v: Vec<(usize, &[usize], usize, usize, usize)> = vec![(6, &[8, 8, 8, 8], 4, 8, 8), (13, &[24, 40, 17], 3, 7, 9)];
    v.extend(sized(vec![(1280, reference, 16, 8, 8), (1280, reference, 4, 32, 32)], vec![(320, &[256, 256, 256, 256], 16, 8, 8)]));
    v
}

/// One train step (forward in train mode, loss, every gradient, the updated running
/// statistics) and the eval forward: (name, is a gradient, tensor).
fn train_step(cfg: &DiffcConfig, x: &Tensor, labels: &Tensor) -> Vec<(String, bool, Tensor)> {
    let mut m = DiffcClassifier::new(cfg.clone(), 5, &x.device()).unwrap();
    let (logits, cache) = m.forward_train(x, 9).unwrap();
    let (loss, probs) = cross_entropy(&logits, labels).unwrap();
    let grads = m.backward(&cross_entropy_backward(&probs, labels, 1.0).unwrap(), &cache).unwrap();
    let mut out = vec![("logits".to_string(), false, logits), ("loss".to_string(), false, loss)];
    for (name, g) in grads.named() {
        // Conv biases before train-mode BN have zero gradient: only noise to compare.
        if !(name.starts_with("conv") && name.ends_with(".bias")) {
            out.push((format!("d {name}"), true, g.clone()));
        }
    }
    for (name, s) in m.state_dict().unwrap() {
        if name.contains("running") {
            out.push((name, false, s));
        }
    }
    out.push(("eval logits".to_string(), false, m.forward_eval(x).unwrap()));
    out
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn train_step_matches_cpu() {
    let dev = cuda();
    for dtype in DType::FLOATS {
        for (i, &(cin, widths, b, h, w)) in cases().iter().enumerate() {
            let cfg = DiffcConfig { in_channels: cin, num_classes: 37, widths: widths.to_vec(), dropout: 0.3 };
            let x = round_through(&revelio::ops::affine(&randn(&[b, cin, h, w], 2100 + i as u64), 3.0, 0.7).unwrap(), dtype);
            let labels = Tensor::from_vec((0..b as i64).map(|j| (j * 11 + 3) % 37).collect::<Vec<i64>>(), [b], &Device::Cpu).unwrap();
            let want = train_step(&cfg, &x, &labels);
            let got = train_step(&cfg, &revelio::ops::to_dtype(&x, dtype).unwrap().to_device(&dev).unwrap(), &labels.to_device(&dev).unwrap());
            for ((name, gradient, a), (_, _, e)) in got.iter().zip(&want) {
                assert!(a.device().is_cuda(), "{name} is not on the GPU");
                let what = format!("diffc train step Cin {cin} widths {widths:?} x [{b}, {cin}, {h}, {w}] ({dtype}) {name}");
                assert_tensor_close(&what, a, e, tol(dtype, *gradient));
            }
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
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
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
