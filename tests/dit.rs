//! DiT against diffusers' DiTTransformer2DModel on random-weight models (fixtures from
//! tools/reference/make_dit_fixtures.py): every block tap (as a [B, D, h, w] map), the
//! embedded tokens and the output, on the CPU in f32 (relative L2 <= 1e-4); the original
//! facebookresearch/DiT key names against diffusers'; taps (early stop, `:delta`, edits); and
//! the errors for bad input and bad weights.

mod common;
#[path = "dit/parity.rs"]
mod parity;

use revelio::models::dit::{DiT, DiTConfig, Layout};
use revelio::models::taps::Taps;
use revelio::{DType, Device, Tensor};

/// f32 on both sides from identical (f16-representable) weights; what remains is summation
/// order over widths <= 128 and torch's vs our sin/cos/exp ulps (~1e-6 observed).
const TOL: f64 = 1e-4;

fn load(config: &str) -> DiT {
    DiT::load(&parity::dir(config), DType::F32, &Device::Cpu).unwrap_or_else(|e| panic!("loading {config}: {e}"))
}

fn err_of(r: revelio::Result<Option<Tensor>>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn c1000_matches_diffusers() {
    // 1000 classes + the null class 1000; the Hub's legacy `Transformer2DModel` config.
    let m = load("c1000");
    assert_eq!((m.config().num_classes(), m.layout()), (1000, Layout::Diffusers));
    let worst = parity::check_model("cpu f32", &m, "c1000", TOL);
    println!("c1000: worst rel L2 {worst:.2e}");
}

#[test]
fn p2_matches_diffusers_at_trained_larger_and_wide_sizes() {
    let worst = parity::check_model("cpu f32", &load("p2"), "p2", TOL);
    println!("p2: worst rel L2 {worst:.2e}");
}

#[test]
fn p4_matches_diffusers_without_qkv_bias_with_affine_norm3() {
    let m = load("p4");
    assert!(!m.config().attention_bias && m.config().norm_elementwise_affine && m.config().patch_size == 4);
    let worst = parity::check_model("cpu f32", &m, "p4", TOL);
    println!("p4: worst rel L2 {worst:.2e}");
}

#[test]
fn original_key_names_load_to_the_same_model() {
    let diffusers = load("c1000");
    let orig_dir = parity::dir("c1000").join("original");
    let original = DiT::load(&orig_dir, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(original.layout(), Layout::Original);
    assert_eq!(original.config(), diffusers.config());
    let io = parity::io("c1000");
    for case in &io.cases {
        let (x, t, y) = io.inputs(case, &Device::Cpu);
        let names = io.tap_names();
        let run = |m: &DiT| {
            let mut taps = Taps::new(names.iter().map(|n| m.resolve_tap(n).unwrap()).collect(), true);
            let out = m.forward(&x, &t, &y, &mut taps).unwrap().unwrap();
            (out, taps.into_values().unwrap())
        };
        let (out_d, taps_d) = run(&diffusers);
        let (out_o, taps_o) = run(&original);
        // Same f32 weights (qkv sliced, embedders shared), same ops: bit for bit.
        for n in &names {
            assert_eq!(taps_o[n].to_f32_vec().unwrap(), taps_d[n].to_f32_vec().unwrap(), "{case} {n}");
        }
        assert_eq!(out_o.to_f32_vec().unwrap(), out_d.to_f32_vec().unwrap(), "{case} sample");
    }
    parity::check_model("cpu f32 original names", &original, "c1000", TOL);

    // Without its config.json: width 16 is not a DiT family width, so the head count is unknown.
    let file = orig_dir.join("DiT-T-2-64x64.safetensors");
    let e = DiT::load_file(&file, None, DType::F32, &Device::Cpu).err().expect("no head count").to_string();
    assert!(e.contains("head count") && e.contains("config.json"), "{e}");
    // With the config given, and with a wrong grid (the pos_embed buffer disagrees).
    let cfg = diffusers.config().clone();
    DiT::load_file(&file, Some(cfg.clone()), DType::F32, &Device::Cpu).unwrap();
    let wrong = DiTConfig { sample_size: 16, ..cfg };
    let e = DiT::load_file(&file, Some(wrong), DType::F32, &Device::Cpu).err().expect("wrong grid").to_string();
    assert!(e.contains("pos_embed"), "{e}");
}

#[test]
fn forward_stops_after_the_deepest_tap() {
    let m = load("p2");
    let io = parity::io("p2");
    let (x, t, y) = io.inputs("native", &Device::Cpu);
    let requests = vec![m.resolve_tap("block.1").unwrap(), m.resolve_tap("pos_embed").unwrap()];
    let mut taps = Taps::new(requests, false);
    let out = m.forward(&x, &t, &y, &mut taps).unwrap();
    assert!(out.is_none(), "the output was computed although only taps were asked for");
    let v = taps.into_values().unwrap();
    for n in ["block.1", "pos_embed"] {
        common::assert_tensor_close(n, &v[n], &io.tensor(&format!("native.{n}")), TOL);
    }
    // Nothing asked for: no block runs.
    let mut none = Taps::new(Vec::new(), false);
    assert!(m.forward(&x, &t, &y, &mut none).unwrap().is_none());
}

#[test]
fn delta_taps_and_edits_see_2d_maps() {
    let m = load("p2");
    let io = parity::io("p2");
    let (x, t, y) = io.inputs("wide", &Device::Cpu);
    let requests = vec![m.resolve_tap("block.2:delta").unwrap(), m.resolve_tap("transformer_blocks.0").unwrap()];
    let mut taps = Taps::new(requests, true);
    // An identity edit at block 1: the map -> tokens round trip must leave the output unchanged.
    taps.edit("transformer_blocks.1", Box::new(|_input, output| Ok(output.clone())));
    let out = m.forward(&x, &t, &y, &mut taps).unwrap().unwrap();
    common::assert_tensor_close("sample after identity edit", &out, &io.tensor("wide.sample"), TOL);
    let v = taps.into_values().unwrap();
    let delta = revelio::ops::sub(&io.tensor("wide.block.2"), &io.tensor("wide.block.1")).unwrap();
    assert_eq!(v["block.2:delta"].dims(), &[2, 32, 4, 6]);
    common::assert_tensor_close("block.2:delta", &v["block.2:delta"], &delta, TOL);
    common::assert_tensor_close("transformer_blocks.0", &v["transformer_blocks.0"], &io.tensor("wide.block.0"), TOL);

    // An edit that zeroes block 1's output changes the result.
    let mut taps = Taps::new(Vec::new(), true);
    taps.edit("transformer_blocks.1", Box::new(|_input, output| Tensor::zeros(output.dims().to_vec(), DType::F32, &Device::Cpu)));
    let edited = m.forward(&x, &t, &y, &mut taps).unwrap().unwrap();
    assert!(common::rel_l2(&edited.to_f32_vec().unwrap(), &out.to_f32_vec().unwrap()) > 1e-2);
}

#[test]
fn tap_names_and_bad_names() {
    let m = load("p2");
    assert_eq!(m.tap_names(), vec!["pos_embed", "transformer_blocks.0", "transformer_blocks.1", "transformer_blocks.2"]);
    let r = m.resolve_tap("block.2:delta").unwrap();
    assert_eq!((r.path.as_str(), r.delta), ("transformer_blocks.2", true));
    for bad in ["block.3", "mid", "block.x", "transformer_blocks.-1", "up.0"] {
        let e = m.resolve_tap(bad).err().unwrap_or_else(|| panic!("{bad} accepted")).to_string();
        assert!(e.contains("block.N") && e.contains("0..3"), "{bad}: {e}");
    }
}

#[test]
fn bad_inputs_are_named() {
    let m = load("p2");
    let io = parity::io("p2");
    let (x, t, y) = io.inputs("native", &Device::Cpu);
    let run = |x: &Tensor, t: &Tensor, y: &Tensor| err_of(m.forward(x, t, y, &mut Taps::default()));
    let cpu = |v: Vec<i64>| Tensor::from_vec(v, [2], &Device::Cpu).unwrap();

    let e = run(&common::randn(&[2, 3, 8, 8], 1), &t, &y);
    assert!(e.contains("[2, 3, 8, 8]") && e.contains("[B, 4, H, W]"), "{e}");
    let e = run(&common::randn(&[2, 4, 9, 8], 1), &t, &y);
    assert!(e.contains("[2, 4, 9, 8]") && e.contains("patch size 2"), "{e}");
    let e = run(&x, &t, &cpu(vec![3, 11]));
    assert!(e.contains("class label 11") && e.contains("0..=10") && e.contains("null class"), "{e}");
    let e = run(&x, &t, &cpu(vec![-1, 0]));
    assert!(e.contains("class label -1"), "{e}");
    let e = run(&x, &t, &Tensor::from_vec(vec![1.0f32, 2.0], [2], &Device::Cpu).unwrap());
    assert!(e.contains("class_labels") && e.contains("i64"), "{e}");
    let e = run(&x, &common::cpu(vec![1.0, 2.0, 3.0], &[3]), &y);
    assert!(e.contains("timestep [3]"), "{e}");
    let e = run(&x, &common::cpu(vec![f32::NAN, 2.0], &[2]), &y);
    assert!(e.contains("NaN"), "{e}");
    // One timestep is shared by the batch.
    let shared = m.forward(&x, &common::cpu(vec![25.0], &[1]), &y, &mut Taps::default()).unwrap().unwrap();
    let both = m.forward(&x, &common::cpu(vec![25.0, 25.0], &[2]), &y, &mut Taps::default()).unwrap().unwrap();
    assert_eq!(shared.to_f32_vec().unwrap(), both.to_f32_vec().unwrap());
}

#[test]
fn bad_weights_and_configs_are_named() {
    // p2's weights under p4's config: the first tensor of another shape is named with both shapes.
    let p4 = load("p4").config().clone();
    let file = parity::dir("p2").join("transformer/diffusion_pytorch_model.safetensors");
    let e = DiT::load_file(&file, Some(p4), DType::F32, &Device::Cpu).err().expect("wrong config").to_string();
    assert!(e.contains("pos_embed.proj.weight") && e.contains("[32, 4, 2, 2]") && e.contains("[32, 4, 4, 4]"), "{e}");
    // Too few blocks in the config: the extra block's tensors are listed.
    let fewer = DiTConfig { num_layers: 2, ..load("p2").config().clone() };
    let e = DiT::load_file(&file, Some(fewer), DType::F32, &Device::Cpu).err().expect("extra tensors").to_string();
    assert!(e.contains("transformer_blocks.2."), "{e}");
    // Diffusers names need a config.json.
    let e = DiT::load_file(&file, None, DType::F32, &Device::Cpu).err().expect("no config").to_string();
    assert!(e.contains("config.json"), "{e}");
    // The CPU computes in f32 only.
    let e = DiT::load(&parity::dir("p2"), DType::BF16, &Device::Cpu).err().expect("bf16 on cpu").to_string();
    assert!(e.contains("f32"), "{e}");
    // A folder with no weights.
    let e = DiT::load(&parity::dir("p2").join("missing"), DType::F32, &Device::Cpu).err().expect("no folder").to_string();
    assert!(e.contains("missing"), "{e}");
}
