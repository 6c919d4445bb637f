//! The U-Net fixtures of tests/unet.rs on CUDA: every tap and the output against diffusers, in
//! f32 (1e-4 relative L2, as on the CPU) and bf16 (2e-2: weights and every activation stored in
//! bf16, u = 2^-9 relative per rounding; about 20 roundings on the longest path, independent,
//! give sqrt(20) * 2^-9 / sqrt(3) = 5e-3 relative L2 on the output, with margin for the
//! weights' own rounding), plus the early stop on the device.

use crate::common::*;
use revelio::models::unet::UNet2DConditionModel;
use revelio::{DType, Device};
use std::path::Path;

fn parity(name: &str, dev: &Device, dtype: DType, tol: f64) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unet").join(name);
    let model = UNet2DConditionModel::load(&dir, dtype, dev).unwrap();
    let f = fixture(&format!("unet/{name}.safetensors"));
    let tap_list: Vec<String> = serde_json::from_str(&f.metadata()["taps"]).unwrap();
    let names: Vec<&str> = tap_list.iter().map(String::as_str).collect();
    let mut taps = model.taps(&names, true).unwrap();
    let (sample, t, ctx) = (fixture_tensor(&f, "sample"), fixture_tensor(&f, "timestep"), fixture_tensor(&f, "encoder_hidden_states"));
    let out = model.forward(&sample, &t, &ctx, &mut taps).unwrap().unwrap();
    assert!(out.device().is_cuda() && out.dtype() == dtype, "{name}: output on {} in {}", out.device(), out.dtype());
    let values = taps.into_values().unwrap();
    let order = model.tap_names();
    let mut sorted = tap_list.clone();
    sorted.sort_by_key(|n| order.iter().position(|p| *p == model.resolve_tap(n).unwrap().path));
    for n in &sorted {
        assert_tensor_close(&format!("U-Net {name} {dtype} tap {n}"), &values[n], &fixture_tensor(&f, &format!("tap.{n}")), tol);
    }
    assert_tensor_close(&format!("U-Net {name} {dtype} output"), &out, &fixture_tensor(&f, "tap.out"), tol);

    let mut early = model.taps(&["mid"], false).unwrap();
    assert!(model.forward(&sample, &t, &ctx, &mut early).unwrap().is_none());
    assert_eq!(early.visited().last().map(String::as_str), Some("mid_block"));
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn unet_fixtures_match_diffusers_on_cuda() {
    let dev = cuda();
    for name in ["sd1", "sd2"] {
        parity(name, &dev, DType::F32, 1e-4);
        parity(name, &dev, DType::BF16, 2e-2);
    }
}

/// Sampling on CUDA (tests/generate.rs's fixture, head dims 12 and 4, padded to 16 and 8 by
/// ops): 10 DDIM steps with classifier-free guidance from diffusers' initial latents, the final
/// latents against StableDiffusionPipeline's, in f32 (1e-4, as on the CPU).
#[test]
#[ignore = "needs a CUDA GPU"]
fn sampling_matches_diffusers_on_cuda() {
    use revelio::models::pipeline::{Pipeline, Sampling};
    use revelio::models::taps::Taps;
    let dev = cuda();
    let sd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/generate/sd");
    let f = fixture("generate/expected.safetensors");
    let mut pipe = Pipeline::load(&sd, DType::F32, &dev).unwrap();
    let cond = pipe.encode_prompts(&["a photo of a cat", "an apple on a table"]).unwrap();
    let uncond = pipe.encode_prompts(&["", ""]).unwrap();
    let s = Sampling { steps: 10, guidance: 7.5, eta: 0.0, seed: 7 };
    let out = pipe.sample(&fixture_tensor(&f, "init"), &cond, Some(&uncond), &[0, 1], &s, &mut Taps::default(), &mut |_| {}).unwrap();
    assert!(out.device().is_cuda());
    assert_tensor_close("final latents on CUDA", &out, &fixture_tensor(&f, "cfg.final"), 1e-4);
}
