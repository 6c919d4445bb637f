//! The VAE fixtures of tests/vae.rs on CUDA: posterior mean and log-variance, decoded images
//! and every tap against diffusers, in f32 (1e-4 relative L2) and bf16 (2e-2: see
//! tests/gpu/unet.rs for the budget; the VAE's paths are shorter).

use crate::common::*;
use revelio::models::vae::AutoencoderKL;
use revelio::{DType, Device};
use std::path::Path;

fn parity(name: &str, dev: &Device, dtype: DType, tol: f64) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vae").join(name);
    let model = AutoencoderKL::load(&dir, dtype, dev).unwrap();
    let f = fixture(&format!("vae/{name}.safetensors"));
    let tap_list: Vec<String> = serde_json::from_str(&f.metadata()["taps"]).unwrap();
    let names: Vec<&str> = tap_list.iter().map(String::as_str).collect();
    let mut taps = model.taps(&names, true).unwrap();
    let posterior = model.encode_with_taps(&fixture_tensor(&f, "images"), &mut taps).unwrap().unwrap();
    let decoded = model.decode_with_taps(&fixture_tensor(&f, "latents"), &mut taps).unwrap().unwrap();
    assert!(decoded.device().is_cuda() && decoded.dtype() == dtype);
    let values = taps.into_values().unwrap();
    for n in &tap_list {
        assert_tensor_close(&format!("VAE {name} {dtype} tap {n}"), &values[n], &fixture_tensor(&f, &format!("tap.{n}")), tol);
    }
    assert_tensor_close(&format!("VAE {name} {dtype} mean"), &posterior.mode(), &fixture_tensor(&f, "latent_mean"), tol);
    assert_tensor_close(&format!("VAE {name} {dtype} logvar"), &posterior.logvar().unwrap(), &fixture_tensor(&f, "latent_logvar"), tol);
    assert_tensor_close(&format!("VAE {name} {dtype} decoded"), &decoded, &fixture_tensor(&f, "decoded"), tol);
    let sample = posterior.sample(3).unwrap();
    assert!(sample.device().is_cuda() && sample.dtype() == dtype);
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn vae_fixtures_match_diffusers_on_cuda() {
    let dev = cuda();
    for name in ["sd", "lite"] {
        parity(name, &dev, DType::F32, 1e-4);
        parity(name, &dev, DType::BF16, 2e-2);
    }
}
