use crate::common::*;
use revelio::ops::optim::{adam_step, AdamConfig, AdamState};
use revelio::DType;

/// Three Adam(W) steps on the GPU against the CPU: parameters and both moments. f32 only.
#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn adam_and_adamw_match_the_cpu() {
    let configs = [
        ("adam", AdamConfig::adam(1e-3)),
        ("adam wd", AdamConfig { weight_decay: 0.1, ..AdamConfig::adam(1e-2) }),
        ("adamw", AdamConfig::adamw(1e-3)),
    ];
    for (i, shape) in [&[1usize][..], &[1001], sized(&[4096, 768], &[256, 768])].iter().enumerate() {
        let p = randn(shape, 1 + i as u64);
        let grads: Vec<_> = (0..3).map(|s| randn(shape, 10 * (i as u64 + 1) + s)).collect();
        let mut inputs = vec![p];
        inputs.extend(grads);
        for (name, cfg) in &configs {
            check_cuda_vs_cpu(&format!("{name} {shape:?}"), DType::F32, &inputs, None, |t| {
                let mut param = t[0].deep_clone()?;
                let mut state = AdamState::new(&param)?;
                for g in &t[1..] {
                    adam_step(&mut param, g, &mut state, cfg)?;
                }
                assert_eq!(state.step, 3);
                Ok(vec![param, state.m, state.v])
            });
        }
    }
}
