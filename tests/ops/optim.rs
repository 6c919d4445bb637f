use crate::common::*;
use revelio::ops::optim::{adam_step, AdamConfig, AdamState};
use revelio::{DType, Device, Tensor};

/// torch.optim.Adam / AdamW written out in f64 for `steps` steps with the gradients `grads`.
/// Hyperparameters are the decimal values (as torch's Python floats).
fn adam64(p0: &[f64], grads: &[Vec<f64>], lr: f64, wd: f64, decoupled: bool) -> Vec<f64> {
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let mut p = p0.to_vec();
    let mut m = vec![0.0; p.len()];
    let mut v = vec![0.0; p.len()];
    for (t, g) in grads.iter().enumerate() {
        let step = (t + 1) as i32;
        let bc1 = 1.0 - b1.powi(step);
        let bc2 = 1.0 - b2.powi(step);
        for i in 0..p.len() {
            let mut gi = g[i];
            if decoupled {
                p[i] *= 1.0 - lr * wd;
            } else {
                gi += wd * p[i];
            }
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            let denom = v[i].sqrt() / bc2.sqrt() + eps;
            p[i] -= (lr / bc1) * m[i] / denom;
        }
    }
    p
}

fn run(cfg: &AdamConfig, p0: &Tensor, grads: &[Tensor]) -> (Tensor, AdamState) {
    let mut p = p0.clone();
    let mut state = AdamState::new(&p).unwrap();
    for g in grads {
        adam_step(&mut p, g, &mut state, cfg).unwrap();
    }
    (p, state)
}

#[test]
fn adam_first_step_by_hand() {
    // p = 1, g = 0.5, lr = 0.1: m = 0.05, v = 0.00025, bc1 = 0.1, bc2 = 0.001,
    // denom = sqrt(0.00025) / sqrt(0.001) + 1e-8 = 0.5 + 1e-8,
    // p = 1 - (0.1 / 0.1) * 0.05 / (0.5 + 1e-8) = 0.9 + 2e-9.
    let p0 = cpu(vec![1.0], &[1]);
    let (p, state) = run(&AdamConfig::adam(0.1), &p0, &[cpu(vec![0.5], &[1])]);
    assert_close("p", &p.to_f32_vec().unwrap(), &[0.9], 1e-7);
    assert_close("m", &state.m.to_f32_vec().unwrap(), &[0.05], 1e-7);
    assert_close("v", &state.v.to_f32_vec().unwrap(), &[0.00025], 1e-6);
    assert_eq!(state.step, 1);
    assert_eq!(p0.to_f32_vec().unwrap(), vec![1.0], "the caller's other handles keep the old values");
}

#[test]
fn adam_and_adamw_match_f64_over_one_and_three_steps() {
    let dims = [37, 3];
    let p0 = randn(&dims, 1);
    let grads: Vec<Tensor> = (0..3).map(|s| randn(&dims, 10 + s)).collect();
    let p64 = to_f64(&p0.to_f32_vec().unwrap());
    let g64: Vec<Vec<f64>> = grads.iter().map(|g| to_f64(&g.to_f32_vec().unwrap())).collect();
    let cases = [
        ("adam", AdamConfig::adam(1e-3), 0.0, false),
        ("adam wd", AdamConfig { weight_decay: 0.1, ..AdamConfig::adam(1e-2) }, 0.1, false),
        ("adamw", AdamConfig::adamw(1e-3), 0.01, true),
        ("adamw wd 0.1", AdamConfig { weight_decay: 0.1, ..AdamConfig::adamw(3e-2) }, 0.1, true),
    ];
    for (name, cfg, wd, decoupled) in cases {
        let lr = cfg.lr.to_string().parse::<f64>().unwrap();
        for steps in [1, 3] {
            let (p, state) = run(&cfg, &p0, &grads[..steps]);
            assert_eq!(state.step, steps as u64);
            let want = adam64(&p64, &g64[..steps], lr, wd, decoupled);
            // The update is ~lr per step on parameters of size ~1: compare the change.
            let got: Vec<f32> = p.to_f32_vec().unwrap().iter().zip(&p64).map(|(&a, &b)| (a as f64 - b) as f32).collect();
            let want_delta: Vec<f32> = want.iter().zip(&p64).map(|(&a, &b)| (a - b) as f32).collect();
            assert_close(&format!("{name}, {steps} steps: param change"), &got, &want_delta, 1e-4);
            assert_close(&format!("{name}, {steps} steps: param"), &p.to_f32_vec().unwrap(), &f64_to_f32(&want), 1e-7);
        }
    }
}

#[test]
fn adam_config_defaults_are_torchs() {
    let a = AdamConfig::adam(1e-3);
    assert_eq!((a.beta1, a.beta2, a.eps, a.weight_decay, a.decoupled_weight_decay), (0.9, 0.999, 1e-8, 0.0, false));
    let w = AdamConfig::adamw(1e-3);
    assert_eq!((w.beta1, w.beta2, w.eps, w.weight_decay, w.decoupled_weight_decay), (0.9, 0.999, 1e-8, 0.01, true));
}

#[test]
fn adam_step_rejects_bad_operands_and_keeps_the_step() {
    let mut p = randn(&[4, 3], 1);
    let mut state = AdamState::new(&p).unwrap();
    let cfg = AdamConfig::adam(1e-3);
    let err = adam_step(&mut p, &randn(&[3, 4], 2), &mut state, &cfg).unwrap_err().to_string();
    assert!(err.contains("[3, 4]") && err.contains("[4, 3]"), "{err}");
    assert_eq!(state.step, 0);
    let bad_beta = AdamConfig { beta2: 1.0, ..cfg };
    assert!(adam_step(&mut p, &randn(&[4, 3], 2), &mut state, &bad_beta).is_err());
    let mut half = revelio::ops::to_dtype(&p, DType::BF16).unwrap();
    assert!(AdamState::new(&half).is_err());
    let g16 = revelio::ops::to_dtype(&randn(&[4, 3], 2), DType::BF16).unwrap();
    assert!(adam_step(&mut half, &g16, &mut state, &cfg).is_err());
    assert_eq!(state.step, 0);
    let zeros = Tensor::zeros([4, 3], DType::F32, &Device::Cpu).unwrap();
    assert_eq!(state.m.to_f32_vec().unwrap(), zeros.to_f32_vec().unwrap());
}
