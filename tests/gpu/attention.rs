use crate::common::*;
use revelio::ops::attention::attention;
use revelio::DType;

// Tolerance: the CPU reference gets the same 16-bit-rounded q, k, v, and S = Q K^T is
// accumulated in f32 on both sides, so the GPU differs by (1) P rounded to 16 bits before the
// P.V mma, a relative error of at most u per term (u = 2^-11 for f16, 2^-8 for bf16) that is
// independent across keys, giving about u/sqrt(3) relative L2 on the output, and (2) the
// output's own rounding, another u/sqrt(3). For bf16 that is sqrt(2) * 2^-8 / sqrt(3) = 3.2e-3
// (f16: 4e-4), within tol_for's 1e-2. f32 uses exact FFMA and expf: 1e-5.

/// (B, Nq, Nk, H, D, causal): tails of the 64/128-row blocks and 32/64-key tiles, 77-key
/// cross attention, every kernel variant's head dim (8 pads to 16, 40 to 48, 72 to 80, 200 to
/// 256, 512 splits the value dim), causal self-attention.
const SMALL: &[(usize, usize, usize, usize, usize, bool)] = &[
    (1, 1, 1, 1, 8, false),
    (2, 70, 77, 3, 40, false),
    (1, 130, 130, 2, 64, true),
    (2, 77, 77, 4, 64, true),
    (1, 300, 300, 1, 72, false),
    (1, 520, 520, 1, 16, true),
    (1, 65, 77, 2, 160, false),
    (1, 100, 90, 1, 96, false),
    (1, 100, 100, 2, 128, true),
    (1, 64, 64, 1, 200, false),
    (1, 33, 40, 1, 512, false),
    (1, 70, 70, 1, 512, true),
    (2, 100, 5, 2, 24, false),
];

/// The models' shapes: SD 1.5 U-Net self- and cross-attention at 64x64 latents, SD 2.1's head
/// dim 64, the VAE mid-block (one head, D = 512), CLIP's causal text encoder, DiT. Small size:
/// the same heads and head dims at 16x16 latents (256 tokens).
const REAL: &[(usize, usize, usize, usize, usize, bool)] = &[
    (2, 4096, 4096, 8, 40, false),
    (2, 4096, 77, 8, 40, false),
    (2, 1024, 1024, 10, 64, false),
    (1, 4096, 4096, 1, 512, false),
    (2, 77, 77, 12, 64, true),
    (2, 256, 256, 16, 72, false),
];
const REAL_SMALL: &[(usize, usize, usize, usize, usize, bool)] = &[
    (1, 256, 256, 8, 40, false),
    (1, 256, 77, 8, 40, false),
    (1, 256, 256, 10, 64, false),
    (1, 256, 256, 1, 512, false),
    (1, 77, 77, 12, 64, true),
    (1, 256, 256, 16, 72, false),
];

fn check(shapes: &[(usize, usize, usize, usize, usize, bool)], seed: u64) {
    for dtype in DType::FLOATS {
        for (i, &(b, nq, nk, h, d, causal)) in shapes.iter().enumerate() {
            let s = seed + 10 * i as u64;
            let inputs = [randn(&[b, nq, h, d], s), randn(&[b, nk, h, d], s + 1), randn(&[b, nk, h, d], s + 2)];
            let scale = 1.0 / (d as f32).sqrt();
            let what = format!("attention B={b} Nq={nq} Nk={nk} H={h} D={d} causal={causal}");
            check_cuda_vs_cpu(&what, dtype, &inputs, None, |t| {
                Ok(vec![attention(&t[0], &t[1], &t[2], scale, causal)?])
            });
        }
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn attention_small_shapes() {
    check(SMALL, 100);
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn attention_model_shapes() {
    check(sized(REAL, REAL_SMALL), 500);
}

/// Head dims that are not multiples of 8 (the tiny test models of diffusers and transformers
/// use 4 and 12): ops pads them with zeros to the next multiple of 8, the scale from the true D.
const ODD_HEAD_DIMS: &[(usize, usize, usize, usize, usize, bool)] = &[
    (2, 70, 77, 2, 4, false),
    (1, 90, 90, 3, 12, true),
    (1, 33, 17, 2, 3, false),
];

#[test]
#[ignore = "needs a CUDA GPU"]
fn attention_odd_head_dims() {
    check(ODD_HEAD_DIMS, 900);
}
