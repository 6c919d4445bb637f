//! The SD U-Net against diffusers' UNet2DConditionModel, on the CPU in f32. The fixtures come
//! from tools/reference/make_unet_fixtures.py: two random-weight U-Nets (`sd1`: SD 1.x layout,
//! conv proj_in, int head count, 16x16 latent, timesteps 25/731; `sd2`: SD 2.x layout, linear
//! projections, per-level head counts, upcast_attention, two transformer layers on one level,
//! and every config value SD leaves at its default changed where we honour it, on a 13x11
//! latent). Every tap and the output must agree to 1e-4 relative L2; a failure names the first
//! tap in execution order that diverges. Also: early stop, tap names and aliases, config and
//! weight errors.

mod common;

use revelio::io::{save_safetensors, SafeTensorsFile};
use revelio::models::taps::Taps;
use revelio::models::unet::embeddings::timestep_embedding;
use revelio::models::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use revelio::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// f32 on both sides; the deepest tap has gone through ~40 layers of f32 sums of a few hundred
/// terms each, which stays below 1e-5; 1e-4 is the bound.
const TOL: f64 = 1e-4;

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/unet").join(name)
}

fn load(name: &str) -> UNet2DConditionModel {
    UNet2DConditionModel::load(&fixture_dir(name), DType::F32, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{e}\nhint: re-run tools/reference/make_unet_fixtures.py"))
}

struct Case {
    file: SafeTensorsFile,
    sample: Tensor,
    timestep: Tensor,
    context: Tensor,
    taps: Vec<String>,
}

fn case(name: &str) -> Case {
    let file = common::fixture(&format!("unet/{name}.safetensors"));
    let taps: Vec<String> = serde_json::from_str(&file.metadata()["taps"]).unwrap();
    Case {
        sample: common::fixture_tensor(&file, "sample"),
        timestep: common::fixture_tensor(&file, "timestep"),
        context: common::fixture_tensor(&file, "encoder_hidden_states"),
        taps,
        file,
    }
}

/// Runs every fixture tap plus the output, compares each in execution order, prints the errors
/// and panics naming the first tap that diverges.
fn parity(name: &str) {
    let model = load(name);
    let c = case(name);
    let names: Vec<&str> = c.taps.iter().map(String::as_str).collect();
    let mut taps = model.taps(&names, true).unwrap();
    let out = model.forward(&c.sample, &c.timestep, &c.context, &mut taps).unwrap().expect("the output was wanted");
    let mut values = taps.into_values().unwrap();
    values.insert("output".into(), out);
    let order = model.tap_names();
    let mut checks: Vec<(usize, String, String)> = c
        .taps
        .iter()
        .map(|n| (order.iter().position(|p| *p == model.resolve_tap(n).unwrap().path).unwrap(), n.clone(), format!("tap.{n}")))
        .collect();
    checks.push((order.len(), "output".into(), "tap.out".into()));
    checks.sort();
    let mut first_bad = None;
    for (_, tap, key) in &checks {
        let want = common::fixture_tensor(&c.file, key);
        let got = &values[tap];
        assert_eq!(got.dims(), want.dims(), "{name} {tap}: shape");
        let (g, w) = (got.to_f32_vec().unwrap(), want.to_f32_vec().unwrap());
        let err = common::rel_l2(&g, &w);
        let max = g.iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("unet {name} {tap:<55} {:?}: rel L2 {err:.2e}, max |diff| {max:.2e}", got.dims());
        if (err.is_nan() || err > TOL) && first_bad.is_none() {
            first_bad = Some((tap.clone(), g, w));
        }
    }
    if let Some((tap, g, w)) = first_bad {
        common::assert_close(&format!("U-Net {name}: first diverging tap `{tap}`"), &g, &w, TOL);
    }
}

#[test]
fn sd1_matches_diffusers() {
    parity("sd1");
}

#[test]
fn sd2_matches_diffusers() {
    parity("sd2");
}

#[test]
fn asking_for_mid_only_stops_before_the_up_blocks() {
    let model = load("sd1");
    let c = case("sd1");
    let mut taps = model.taps(&["bottleneck"], false).unwrap();
    let out = model.forward(&c.sample, &c.timestep, &c.context, &mut taps).unwrap();
    assert!(out.is_none(), "the pass should stop after mid_block");
    let visited = taps.visited().to_vec();
    assert_eq!(visited.last().map(String::as_str), Some("mid_block"));
    assert!(!visited.iter().any(|p| p.starts_with("up_blocks") || p == "conv_out"), "{visited:?}");
    let v = taps.into_values().unwrap();
    common::assert_tensor_close("bottleneck", &v["bottleneck"], &common::fixture_tensor(&c.file, "tap.mid"), TOL);

    // A tap inside a block stops there, in the middle of down_blocks.1.
    let mut taps = model.taps(&["down_blocks.1.resnets.0"], false).unwrap();
    assert!(model.forward(&c.sample, &c.timestep, &c.context, &mut taps).unwrap().is_none());
    assert_eq!(taps.visited().last().map(String::as_str), Some("down_blocks.1.resnets.0"));
    assert!(!taps.visited().iter().any(|p| p == "down_blocks.1.attentions.0"));

    // No taps and no output wanted: nothing runs.
    let mut none = Taps::new(Vec::new(), false);
    assert!(model.forward(&c.sample, &c.timestep, &c.context, &mut none).unwrap().is_none());
    assert!(none.visited().is_empty());
}

#[test]
fn an_edit_replaces_the_bottleneck_in_flight() {
    let model = load("sd1");
    let c = case("sd1");
    let mut taps = model.taps(&["mid", "up.0"], true).unwrap();
    // The interventions' hook: replace mid_block's output (here: doubled) before the up path.
    taps.edit("mid_block", Box::new(|_input, out| revelio::ops::scale(out, 2.0)));
    let out = model.forward(&c.sample, &c.timestep, &c.context, &mut taps).unwrap().unwrap();
    let v = taps.into_values().unwrap();
    // The tap sees what the model computed; everything after it sees the edit.
    common::assert_tensor_close("mid before the edit", &v["mid"], &common::fixture_tensor(&c.file, "tap.mid"), TOL);
    let plain = common::fixture_tensor(&c.file, "tap.up.0").to_f32_vec().unwrap();
    assert!(common::rel_l2(&v["up.0"].to_f32_vec().unwrap(), &plain) > 1e-2, "up.0 did not change");
    let want = common::fixture_tensor(&c.file, "tap.out").to_f32_vec().unwrap();
    assert!(common::rel_l2(&out.to_f32_vec().unwrap(), &want) > 1e-2, "the output did not change");
    // An edit keeps the pass going past the last tap until it is applied.
    let mut taps = model.taps(&["down.0"], false).unwrap();
    taps.edit("up_blocks.1", Box::new(|_input, out| Ok(out.clone())));
    assert!(model.forward(&c.sample, &c.timestep, &c.context, &mut taps).unwrap().is_none());
    assert_eq!(taps.visited().last().map(String::as_str), Some("up_blocks.1"));
}

#[test]
fn a_full_pass_visits_tap_names_in_order() {
    for name in ["sd1", "sd2"] {
        let model = load(name);
        let c = case(name);
        let mut taps = Taps::default();
        model.forward(&c.sample, &c.timestep, &c.context, &mut taps).unwrap().unwrap();
        assert_eq!(taps.visited(), model.tap_names().as_slice(), "{name}");
    }
}

#[test]
fn tap_names_resolve_aliases_and_reject_unknown_ones() {
    let model = load("sd1");
    let names = model.tap_names();
    assert_eq!(names.first().map(String::as_str), Some("conv_in"));
    assert_eq!(names.last().map(String::as_str), Some("conv_out"));
    for path in [
        "down_blocks.0.resnets.1",
        "down_blocks.0.attentions.1",
        "down_blocks.0.attentions.1.transformer_blocks.0",
        "down_blocks.0.downsamplers.0",
        "down_blocks.2",
        "mid_block.attentions.0",
        "up_blocks.0.upsamplers.0",
        "up_blocks.2.resnets.2",
    ] {
        assert!(names.iter().any(|n| n == path), "{path} missing from {names:?}");
    }
    assert!(!names.iter().any(|n| n == "down_blocks.2.downsamplers.0" || n == "up_blocks.2.upsamplers.0"));
    for (alias, path, delta) in [
        ("down.1", "down_blocks.1", false),
        ("mid", "mid_block", false),
        ("bottleneck", "mid_block", false),
        ("bottleneck:0", "mid_block", false),
        ("up.2", "up_blocks.2", false),
        ("up_ft1", "up_blocks.1", false),
        ("up_ft:0", "up_blocks.0", false),
        ("out", "conv_out", false),
        ("mid_block.attentions.0:delta", "mid_block.attentions.0", true),
        ("mid:delta", "mid_block", true),
    ] {
        let r = model.resolve_tap(alias).unwrap();
        assert_eq!((r.name.as_str(), r.path.as_str(), r.delta), (alias, path, delta));
    }
    for bad in ["up.3", "down_blocks.2.downsamplers.0", "mid_block.attentions.1", "up_ft", "middle", "conv_in:delta:delta"] {
        let err = model.resolve_tap(bad).unwrap_err().to_string();
        assert!(err.contains(&format!("`{bad}`")) && err.contains("up_blocks.1.attentions.2") && err.contains("up.0..up.2"), "{err}");
    }
}

#[test]
fn delta_of_a_shape_changing_module_is_an_error() {
    let model = load("sd1");
    let c = case("sd1");
    let mut taps = model.taps(&["up.0:delta"], false).unwrap();
    let err = model.forward(&c.sample, &c.timestep, &c.context, &mut taps).unwrap_err().to_string();
    assert!(err.contains("up.0:delta") && err.contains("up_blocks.0"), "{err}");
}

#[test]
fn one_timestep_is_broadcast_over_the_batch() {
    let model = load("sd2");
    let c = case("sd2");
    let one = Tensor::from_vec(vec![421.5f32], [1], &Device::Cpu).unwrap();
    let both = Tensor::from_vec(vec![421.5f32; 2], [2], &Device::Cpu).unwrap();
    let a = model.forward(&c.sample, &one, &c.context, &mut Taps::default()).unwrap().unwrap();
    let b = model.forward(&c.sample, &both, &c.context, &mut Taps::default()).unwrap().unwrap();
    assert_eq!(a.to_f32_vec().unwrap(), b.to_f32_vec().unwrap());
    let three = Tensor::from_vec(vec![1f32; 3], [3], &Device::Cpu).unwrap();
    let err = model.forward(&c.sample, &three, &c.context, &mut Taps::default()).unwrap_err().to_string();
    assert!(err.contains("1 or 2 values"), "{err}");
    let bad_ctx = Tensor::zeros([2, 5, 7], DType::F32, &Device::Cpu).unwrap();
    let err = model.forward(&c.sample, &one, &bad_ctx, &mut Taps::default()).unwrap_err().to_string();
    assert!(err.contains("[2, 5, 7]") && err.contains("[2, S, 20]"), "{err}");
}

#[test]
fn timestep_embedding_follows_get_timestep_embedding() {
    // t = 0: cos = 1, sin = 0; flip_sin_to_cos puts cos first.
    assert_eq!(timestep_embedding(&[0.0], 6, true, 0.0), vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(timestep_embedding(&[0.0], 6, false, 1.0), vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    // freq_i = exp(-ln(10000) i / (half - shift)) in f64, against our f32 pipeline.
    for (dim, shift, flip) in [(320usize, 0.0f32, true), (16, 1.0, false), (9, 0.0, true)] {
        let half = dim / 2;
        let t = [3.0f32, 731.0];
        let got = timestep_embedding(&t, dim, flip, shift);
        for (row, &tv) in t.iter().enumerate() {
            for i in 0..half {
                let f = (-(10000f64.ln()) * i as f64 / (half as f64 - shift as f64)).exp();
                let (s, c) = ((tv as f64 * f).sin(), (tv as f64 * f).cos());
                let (a, b) = if flip { (c, s) } else { (s, c) };
                // f32 rounding of the argument (up to ~1000) moves sin/cos by ~1e-4 at most.
                assert!((got[row * dim + i] as f64 - a).abs() < 2e-4, "dim {dim} row {row} col {i}");
                assert!((got[row * dim + half + i] as f64 - b).abs() < 2e-4, "dim {dim} row {row} col {}", half + i);
            }
            if dim % 2 == 1 {
                assert_eq!(got[row * dim + dim - 1], 0.0, "odd dims are padded with a zero column");
            }
        }
    }
}

// ------------------------------------------------------------------ errors

/// A fresh folder under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("revelio-unet-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A copy of fixture folder `name` with config.json edited by `edit`.
fn with_config(name: &str, tag: &str, edit: impl Fn(&mut serde_json::Map<String, serde_json::Value>)) -> PathBuf {
    let d = temp_dir(tag);
    for entry in std::fs::read_dir(fixture_dir(name)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, d.join(p.file_name().unwrap())).unwrap();
    }
    let path = d.join("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(json.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    d
}

/// A copy of fixture folder `name` whose weights are edited by `edit`.
fn with_weights(name: &str, tag: &str, edit: impl Fn(&mut HashMap<String, Tensor>)) -> PathBuf {
    let d = with_config(name, tag, |_| {});
    let file = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "safetensors")).unwrap();
    let mut tensors = SafeTensorsFile::open(&file).unwrap().load_all(&Device::Cpu).unwrap();
    edit(&mut tensors);
    let list: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    save_safetensors(&file, &list, None).unwrap();
    d
}

fn load_err(dir: &Path) -> String {
    let r = UNet2DConditionModel::load(dir, DType::F32, &Device::Cpu);
    let _ = std::fs::remove_dir_all(dir);
    match r {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unsupported_config_values_are_named() {
    use serde_json::json;
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("resnet_time_scale_shift", json!("ada_group"), "resnet_time_scale_shift"),
        ("down_block_types", json!(["SimpleCrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]), "SimpleCrossAttnDownBlock2D"),
        ("up_block_types", json!(["UpBlock2D", "AttnUpBlock2D", "CrossAttnUpBlock2D"]), "AttnUpBlock2D"),
        ("mid_block_type", json!("UNetMidBlock2DSimpleCrossAttn"), "mid_block_type"),
        ("num_attention_heads", json!(8), "num_attention_heads"),
        ("only_cross_attention", json!(true), "only_cross_attention"),
        ("dual_cross_attention", json!(true), "dual_cross_attention"),
        ("class_embed_type", json!("timestep"), "class_embed_type"),
        ("addition_embed_type", json!("text_time"), "addition_embed_type"),
        ("time_cond_proj_dim", json!(256), "time_cond_proj_dim"),
        ("encoder_hid_dim", json!(64), "encoder_hid_dim"),
        ("act_fn", json!("gelu"), "act_fn"),
        ("time_embedding_type", json!("fourier"), "time_embedding_type"),
        ("attention_head_dim", json!(3), "3 heads"),
        ("attention_head_dim", json!([2, 2]), "attention_head_dim"),
        ("layers_per_block", json!("two"), "layers_per_block"),
        ("conv_in_kernel", json!(4), "conv_in_kernel"),
        ("norm_num_groups", json!(5), "norm_num_groups"),
    ];
    for (i, (key, value, expect)) in cases.into_iter().enumerate() {
        let d = with_config("sd1", &format!("cfg{i}"), |m| {
            m.insert(key.to_string(), value.clone());
        });
        let err = load_err(&d);
        assert!(err.contains(expect) && err.contains("config.json"), "{key} = {value}: {err}");
    }
    let d = with_config("sd1", "class", |m| {
        m.insert("_class_name".into(), "AutoencoderKL".into());
    });
    assert!(load_err(&d).contains("AutoencoderKL"));
    // Unknown keys only warn; the head-count quirk is read as diffusers reads it.
    let d = with_config("sd1", "unknown", |m| {
        m.insert("some_future_option".into(), serde_json::json!(1));
    });
    let cfg = UNet2DConditionConfig::from_file(&d.join("config.json")).unwrap();
    let _ = std::fs::remove_dir_all(&d);
    assert!(cfg.level_table().unwrap().iter().all(|l| l.heads == 2));
}

#[test]
fn bad_weights_are_named() {
    let key = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight";
    let d = with_weights("sd1", "missing", |t| {
        t.remove(key);
    });
    let err = load_err(&d);
    assert!(err.contains(key) && err.contains("missing"), "{err}");

    let d = with_weights("sd1", "shape", |t| {
        let w = t[key].clone();
        t.insert(key.into(), w.reshape([w.dims()[1], w.dims()[0]]).unwrap());
    });
    let err = load_err(&d);
    assert!(err.contains(key) && err.contains("[24, 16]") && err.contains("[16, 24]"), "{err}");

    let d = with_weights("sd1", "extra", |t| {
        t.insert("mid_block.attentions.0.transformer_blocks.1.norm1.weight".into(), Tensor::zeros([16], DType::F16, &Device::Cpu).unwrap());
    });
    let err = load_err(&d);
    assert!(err.contains("mid_block.attentions.0.transformer_blocks.1.norm1.weight") && err.contains("no place"), "{err}");

    let d = temp_dir("empty");
    assert!(load_err(&d).contains("config.json"));
    let err = match UNet2DConditionModel::load(&fixture_dir("sd1"), DType::BF16, &Device::Cpu) {
        Ok(_) => panic!("bf16 on the CPU loaded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("bf16") && err.contains("f32"), "{err}");
}

#[test]
fn a_pipeline_folder_loads_its_unet() {
    let d = temp_dir("pipeline");
    let unet = d.join("unet");
    std::fs::create_dir_all(&unet).unwrap();
    for entry in std::fs::read_dir(fixture_dir("sd2")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, unet.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(d.join("model_index.json"), "{}").unwrap();
    let model = UNet2DConditionModel::load(&d, DType::F32, &Device::Cpu);
    let _ = std::fs::remove_dir_all(&d);
    assert!(model.unwrap().config().use_linear_projection);
}
