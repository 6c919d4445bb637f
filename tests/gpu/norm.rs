use crate::common::*;
use revelio::ops::norm::{batch_norm_backward, batch_norm_eval, batch_norm_train, group_norm, layer_norm, BatchNormState};
use revelio::DType;

/// GroupNorm shapes: the SD 1.5 U-Net at 512 px (groups of 10 x 4096, 20 x 1024, 40 x 256 and
/// 40 x 64 values, one read through smem), the VAE at 512 px (4 x 262144 per group: two phases,
/// several L2 slices), and shapes whose spatial size is not a multiple of the vector width.
/// Small size: the same three paths (smem, two phases over two slices, odd sizes).
fn group_norm_cases() -> Vec<(&'static [usize], usize)> {
    let odd: [(&[usize], usize); 4] = [(&[2, 6, 7, 5], 3), (&[1, 32, 101, 103], 4), (&[3, 8], 4), (&[2, 4, 3], 1)];
    let big: Vec<(&[usize], usize)> = sized(
        vec![
            (&[2, 320, 64, 64], 32),
            (&[2, 640, 32, 32], 32),
            (&[2, 1280, 16, 16], 32),
            (&[2, 1280, 8, 8], 32),
            (&[1, 128, 256, 256], 32),
            (&[1, 128, 512, 512], 32),
            (&[1, 512, 64, 64], 32),
            (&[1, 32, 301, 301], 4),
        ],
        vec![(&[2, 320, 16, 16], 32), (&[2, 1280, 8, 8], 32), (&[1, 128, 256, 256], 32)],
    );
    big.into_iter().chain(odd).collect()
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn group_norm_silu_matches_cpu() {
    for dtype in DType::FLOATS {
        for (i, &(dims, groups)) in group_norm_cases().iter().enumerate() {
            let c = dims[1];
            let inputs = [randn(dims, 300 + i as u64), randn(&[c], 400 + i as u64), randn(&[c], 500 + i as u64)];
            check_cuda_vs_cpu(&format!("group_norm {dims:?} g{groups}"), dtype, &inputs, None, |t| {
                Ok(vec![
                    group_norm(&t[0], groups, Some(&t[1]), Some(&t[2]), 1e-5, true)?,
                    group_norm(&t[0], groups, None, None, 1e-6, false)?,
                    group_norm(&t[0], groups, Some(&t[1]), None, 1e-5, false)?,
                ])
            });
        }
    }
}

/// Same inputs, same bits: both GroupNorm paths reduce in a fixed order.
#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn group_norm_is_deterministic() {
    let dev = cuda();
    for (dims, groups) in [(sized(&[2usize, 320, 64, 64][..], &[2, 320, 16, 16]), 32), (&[1, 128, 256, 256], 32)] {
        let x = revelio::ops::to_dtype(&randn(dims, 7), DType::BF16).unwrap().to_device(&dev).unwrap();
        let bits = || -> Vec<u16> {
            let y = group_norm(&x, groups, None, None, 1e-5, true).unwrap();
            y.to_vec::<half::bf16>().unwrap().iter().map(|v| v.to_bits()).collect()
        };
        let (a, b) = (bits(), bits());
        assert!(a == b, "group_norm {dims:?} differs between two runs");
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn layer_norm_matches_cpu() {
    // U-Net transformer rows (320..1280), CLIP (768, 1024), DiT (1152), and rows that are not a
    // multiple of the vector width.
    let shapes: Vec<&[usize]> = sized(
        vec![&[2, 4096, 320], &[2, 1024, 640], &[2, 256, 1280], &[2, 77, 768], &[2, 77, 1024], &[2, 256, 1152], &[5, 1023], &[4, 13], &[3, 7, 16385]],
        vec![&[2, 64, 320], &[2, 16, 1280], &[2, 77, 768], &[2, 16, 1152], &[5, 1023], &[4, 13], &[3, 2, 16385]],
    );
    for dtype in DType::FLOATS {
        for (i, dims) in shapes.iter().enumerate() {
            let c = *dims.last().unwrap();
            let inputs = [randn(dims, 600 + i as u64), randn(&[c], 700 + i as u64), randn(&[c], 800 + i as u64)];
            check_cuda_vs_cpu(&format!("layer_norm {dims:?}"), dtype, &inputs, None, |t| {
                Ok(vec![layer_norm(&t[0], Some(&t[1]), Some(&t[2]), 1e-5)?, layer_norm(&t[0], None, None, 1e-6)?])
            });
        }
    }
}

/// Train-mode forward (with the running-stat update), eval mode with the updated stats, and the
/// backward, affine and not: every output, the cache and the running stats compared.
#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn batch_norm_train_eval_backward_match_cpu() {
    let shapes: Vec<&[usize]> = sized(
        vec![&[64, 320, 32, 32], &[16, 1280, 8, 8], &[8, 64, 17, 17], &[3, 5, 7, 3], &[4, 7], &[2, 3, 5, 4, 2]],
        vec![&[8, 320, 8, 8], &[4, 1280, 4, 4], &[8, 64, 17, 17], &[3, 5, 7, 3], &[4, 7], &[2, 3, 5, 4, 2]],
    );
    for dtype in DType::FLOATS {
        for (i, dims) in shapes.iter().enumerate() {
            let c = dims[1];
            let s = 900 + 10 * i as u64;
            let inputs = [
                randn(dims, s),
                randn(&[c], s + 1),
                randn(&[c], s + 2),
                randn(&[c], s + 3),
                uniform(&[c], 0.5, 2.0, s + 4),
                randn(dims, s + 5),
            ];
            check_cuda_vs_cpu(&format!("batch_norm {dims:?}"), dtype, &inputs, None, |t| {
                let mut st = BatchNormState { running_mean: revelio::ops::to_dtype(&t[3], DType::F32)?, running_var: revelio::ops::to_dtype(&t[4], DType::F32)? };
                let (y, cache) = batch_norm_train(&t[0], Some(&t[1]), Some(&t[2]), Some(&mut st), 0.1, 1e-5)?;
                let eval = batch_norm_eval(&t[0], Some(&t[1]), Some(&t[2]), &st, 1e-5)?;
                let g = batch_norm_backward(&t[5], &t[0], &cache, Some(&t[1]))?;
                let (y0, cache0) = batch_norm_train(&t[0], None, None, None, 0.1, 1e-3)?;
                let g0 = batch_norm_backward(&t[5], &t[0], &cache0, None)?;
                let (dw, db) = (g.dweight.expect("affine layer"), g.dbias.expect("affine layer"));
                Ok(vec![y, cache.mean, cache.rstd, st.running_mean, st.running_var, eval, g.dx, dw, db, y0, g0.dx])
            });
        }
    }
}

/// A state of the default kind on the GPU starts at mean 0, variance 1 and moves like the CPU's.
#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn batch_norm_state_on_gpu_updates_in_place() {
    let dev = cuda();
    let x = randn(&[4, 3, 5, 5], 1);
    let mut gpu_state = BatchNormState::new(3, &dev).unwrap();
    let mut cpu_state = BatchNormState::new(3, &revelio::Device::Cpu).unwrap();
    assert_eq!(gpu_state.running_var.to_f32_vec().unwrap(), vec![1.0; 3]);
    let shared = gpu_state.running_mean.clone();
    for _ in 0..3 {
        batch_norm_train(&x.to_device(&dev).unwrap(), None, None, Some(&mut gpu_state), 0.2, 1e-5).unwrap();
        batch_norm_train(&x, None, None, Some(&mut cpu_state), 0.2, 1e-5).unwrap();
    }
    assert_tensor_close("running_mean", &gpu_state.running_mean, &cpu_state.running_mean, 1e-5);
    assert_tensor_close("running_var", &gpu_state.running_var, &cpu_state.running_var, 1e-5);
    // A clone taken before the update keeps its old values (the update copied shared storage).
    assert_eq!(shared.to_f32_vec().unwrap(), vec![0.0; 3]);
}
