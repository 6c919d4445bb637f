//! The SD VAE against diffusers' AutoencoderKL, on the CPU in f32. The fixtures come from
//! tools/reference/make_vae_fixtures.py: two random-weight VAEs (`sd`: 2 levels with the SD
//! layout, f32 weights; `lite`: 3 levels, 2 layers per block, no post_quant_conv and no
//! mid-block attention, f16 weights in the fp16 variant file), 2x3x24x20 images. The posterior
//! mean and log-variance, the decoded images and every tap must agree to 1e-4 relative L2; a
//! failure names the first tap in execution order that diverges. Also: sampling, scaling, early
//! stop, config and weight errors.

mod common;

use revelio::io::{save_safetensors, SafeTensorsFile};
use revelio::models::taps::Taps;
use revelio::models::vae::AutoencoderKL;
use revelio::{ops, DType, Device, Tensor};
use std::path::{Path, PathBuf};

/// f32 on both sides (sums of at most a few hundred terms per layer); the bound.
const TOL: f64 = 1e-4;

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vae").join(name)
}

fn load(name: &str) -> AutoencoderKL {
    AutoencoderKL::load(&fixture_dir(name), DType::F32, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{e}\nhint: re-run tools/reference/make_vae_fixtures.py"))
}

fn fixture(name: &str) -> (SafeTensorsFile, Vec<String>) {
    let f = common::fixture(&format!("vae/{name}.safetensors"));
    let taps = serde_json::from_str(&f.metadata()["taps"]).unwrap();
    (f, taps)
}

/// Encodes the fixture images and decodes the fixture latents with every fixture tap, compares
/// all in execution order, prints the errors, and panics naming the first divergence.
fn parity(name: &str) {
    let model = load(name);
    let (f, tap_list) = fixture(name);
    let names: Vec<&str> = tap_list.iter().map(String::as_str).collect();
    let mut taps = model.taps(&names, true).unwrap();
    let posterior = model.encode_with_taps(&common::fixture_tensor(&f, "images"), &mut taps).unwrap().unwrap();
    let decoded = model.decode_with_taps(&common::fixture_tensor(&f, "latents"), &mut taps).unwrap().unwrap();
    let mut values = taps.into_values().unwrap();
    values.insert("latent_mean".into(), posterior.mode());
    values.insert("latent_logvar".into(), posterior.logvar().unwrap());
    values.insert("decoded".into(), decoded);
    let order = model.tap_names();
    let pos = |n: &str| order.iter().position(|p| *p == model.resolve_tap(n).unwrap().path).unwrap();
    let enc_end = pos("quant_conv").max(pos("encoder.conv_out"));
    // (position in execution order, after the tap there, name, fixture key)
    let mut checks: Vec<(usize, bool, String, String)> = tap_list.iter().map(|n| (pos(n), false, n.clone(), format!("tap.{n}"))).collect();
    checks.push((enc_end, true, "latent_mean".into(), "latent_mean".into()));
    checks.push((enc_end, true, "latent_logvar".into(), "latent_logvar".into()));
    checks.push((order.len(), true, "decoded".into(), "decoded".into()));
    checks.sort();
    let mut first_bad = None;
    for (_, _, tap, key) in &checks {
        let want = common::fixture_tensor(&f, key);
        let got = &values[tap];
        assert_eq!(got.dims(), want.dims(), "{name} {tap}: shape");
        let (g, w) = (got.to_f32_vec().unwrap(), want.to_f32_vec().unwrap());
        let err = common::rel_l2(&g, &w);
        let max = g.iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("vae {name} {tap:<40} {:?}: rel L2 {err:.2e}, max |diff| {max:.2e}", got.dims());
        if (err.is_nan() || err > TOL) && first_bad.is_none() {
            first_bad = Some((tap.clone(), g, w));
        }
    }
    if let Some((tap, g, w)) = first_bad {
        common::assert_close(&format!("VAE {name}: first diverging tap `{tap}`"), &g, &w, TOL);
    }
}

#[test]
fn sd_vae_matches_diffusers() {
    parity("sd");
}

#[test]
fn lite_vae_matches_diffusers() {
    parity("lite");
}

#[test]
fn sampling_and_scaling() {
    let model = load("sd");
    let (f, _) = fixture("sd");
    let images = common::fixture_tensor(&f, "images");
    let posterior = model.encode(&images).unwrap();
    // sample(seed) = mean + exp(logvar / 2) * randn(seed): deterministic, ours not torch's.
    let s = posterior.sample(7).unwrap();
    assert_eq!(s.to_f32_vec().unwrap(), posterior.sample(7).unwrap().to_f32_vec().unwrap());
    assert_ne!(s.to_f32_vec().unwrap(), posterior.sample(8).unwrap().to_f32_vec().unwrap());
    let noise = Tensor::randn(posterior.mean.shape().clone(), 7, &Device::Cpu).unwrap();
    let want = ops::add(&posterior.mean, &ops::mul(&posterior.std().unwrap(), &noise).unwrap()).unwrap();
    common::assert_tensor_close("sample", &s, &want, 1e-6);
    let std = posterior.std().unwrap().to_f32_vec().unwrap();
    let lv = posterior.logvar().unwrap().to_f32_vec().unwrap();
    assert!(std.iter().zip(&lv).all(|(s, l)| (s - (0.5 * l).exp()).abs() <= 1e-6 * s.abs()));

    // encode_scaled = scaling_factor * mode (or * sample); decode_scaled undoes the scale.
    let sf = model.scaling_factor();
    assert_eq!(sf, 0.18215);
    let z = model.encode_scaled(&images, None).unwrap();
    common::assert_tensor_close("encode_scaled", &z, &ops::scale(&posterior.mean, sf).unwrap(), 1e-7);
    let zs = model.encode_scaled(&images, Some(7)).unwrap();
    common::assert_tensor_close("encode_scaled sampled", &zs, &ops::scale(&s, sf).unwrap(), 1e-6);
    let latents = common::fixture_tensor(&f, "latents");
    let a = model.decode_scaled(&ops::scale(&latents, sf).unwrap()).unwrap();
    common::assert_tensor_close("decode_scaled", &a, &common::fixture_tensor(&f, "decoded"), TOL);
}

#[test]
fn taps_stop_the_pass_early_and_follow_tap_names() {
    let model = load("lite");
    let (f, _) = fixture("lite");
    let images = common::fixture_tensor(&f, "images");
    let mut taps = model.taps(&["encoder.down_blocks.1"], false).unwrap();
    assert!(model.encode_with_taps(&images, &mut taps).unwrap().is_none());
    assert_eq!(taps.visited().last().map(String::as_str), Some("encoder.down_blocks.1"));
    assert!(!taps.visited().iter().any(|p| p.starts_with("encoder.down_blocks.2")));
    let v = taps.into_values().unwrap();
    common::assert_tensor_close("early", &v["encoder.down_blocks.1"], &common::fixture_tensor(&f, "tap.encoder.down_blocks.1"), TOL);

    // A full encode + decode visits every tap name, in order.
    let mut taps = Taps::default();
    model.encode_with_taps(&images, &mut taps).unwrap().unwrap();
    model.decode_with_taps(&common::fixture_tensor(&f, "latents"), &mut taps).unwrap().unwrap();
    assert_eq!(taps.visited(), model.tap_names().as_slice());
    let names = model.tap_names();
    assert!(names.iter().any(|n| n == "quant_conv") && !names.iter().any(|n| n == "post_quant_conv"));
    assert!(!names.iter().any(|n| n.contains("attentions")), "lite has no mid-block attention");
    let sd = load("sd");
    assert!(sd.tap_names().iter().any(|n| n == "encoder.mid_block.attentions.0"));
    let err = model.resolve_tap("encoder.mid_block.attentions.0").unwrap_err().to_string();
    assert!(err.contains("encoder.mid_block.resnets.1") && err.contains("decoder.up_blocks.2"), "{err}");
    let err = model.encode(&Tensor::zeros([1, 4, 8, 8], DType::F32, &Device::Cpu).unwrap()).err().unwrap().to_string();
    assert!(err.contains("[1, 4, 8, 8]") && err.contains("in_channels is 3"), "{err}");
}

/// A copy of fixture folder `name` with config.json and the weights edited.
fn edited(name: &str, tag: &str, cfg: impl Fn(&mut serde_json::Map<String, serde_json::Value>), w: impl Fn(&mut std::collections::HashMap<String, Tensor>)) -> PathBuf {
    let d = std::env::temp_dir().join(format!("revelio-vae-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    for entry in std::fs::read_dir(fixture_dir(name)).unwrap() {
        let p = entry.unwrap().path();
        let to = d.join(p.file_name().unwrap());
        if p.extension().is_some_and(|x| x == "safetensors") {
            let mut t = SafeTensorsFile::open(&p).unwrap().load_all(&Device::Cpu).unwrap();
            w(&mut t);
            let list: Vec<(&str, &Tensor)> = t.iter().map(|(k, v)| (k.as_str(), v)).collect();
            save_safetensors(&to, &list, None).unwrap();
        } else {
            let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            cfg(json.as_object_mut().unwrap());
            std::fs::write(&to, serde_json::to_string_pretty(&json).unwrap()).unwrap();
        }
    }
    d
}

fn load_err(dir: &Path) -> String {
    let r = AutoencoderKL::load(dir, DType::F32, &Device::Cpu);
    let _ = std::fs::remove_dir_all(dir);
    match r {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_configs_and_weights_are_named() {
    use serde_json::json;
    for (i, (key, value, expect)) in [
        ("shift_factor", json!(0.1159), "shift_factor"),
        ("latents_mean", json!([0.0, 0.0, 0.0, 0.0]), "latents_mean"),
        ("down_block_types", json!(["DownEncoderBlock2D", "AttnDownEncoderBlock2D"]), "AttnDownEncoderBlock2D"),
        ("up_block_types", json!(["UpDecoderBlock2D"]), "up_block_types"),
        ("act_fn", json!("relu"), "act_fn"),
        ("block_out_channels", json!([8, 516]), "mid-block attention"),
    ]
    .into_iter()
    .enumerate()
    {
        let d = edited("sd", &format!("cfg{i}"), |m| {
            m.insert(key.into(), value.clone());
        }, |_| {});
        let err = load_err(&d);
        assert!(err.contains(expect), "{key} = {value}: {err}");
    }
    let key = "decoder.mid_block.attentions.0.to_v.bias";
    let d = edited("sd", "missing", |_| {}, |t| {
        t.remove(key);
    });
    let err = load_err(&d);
    assert!(err.contains(key) && err.contains("missing"), "{err}");
    // The weights of a VAE with post_quant_conv, loaded with a config that has none.
    let d = edited("sd", "extra", |m| {
        m.insert("use_post_quant_conv".into(), json!(false));
    }, |_| {});
    let err = load_err(&d);
    assert!(err.contains("post_quant_conv.weight") && err.contains("post_quant_conv.bias"), "{err}");
    // Pre-0.14 attention names (query/key/value/proj_attn) load as diffusers renames them.
    let d = edited("sd", "legacy", |_| {}, |t| {
        for (new, old) in [("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")] {
            for part in ["encoder", "decoder"] {
                for kind in ["weight", "bias"] {
                    let v = t.remove(&format!("{part}.mid_block.attentions.0.{new}.{kind}")).unwrap();
                    t.insert(format!("{part}.mid_block.attentions.0.{old}.{kind}"), v);
                }
            }
        }
    });
    let legacy = AutoencoderKL::load(&d, DType::F32, &Device::Cpu);
    let _ = std::fs::remove_dir_all(&d);
    let (f, _) = fixture("sd");
    let decoded = legacy.unwrap().decode(&common::fixture_tensor(&f, "latents")).unwrap();
    common::assert_tensor_close("legacy names", &decoded, &common::fixture_tensor(&f, "decoded"), TOL);

    let d = edited("sd", "shape", |_| {}, |t| {
        t.insert("quant_conv.weight".into(), Tensor::zeros([8, 8, 3, 3], DType::F32, &Device::Cpu).unwrap());
    });
    let err = load_err(&d);
    assert!(err.contains("quant_conv.weight") && err.contains("[8, 8, 3, 3]") && err.contains("[8, 8, 1, 1]"), "{err}");
}
