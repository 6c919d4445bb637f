//! Single-file LDM checkpoints mapped to diffusers' names. The fixtures come from
//! tools/reference/make_ldm_fixtures.py: tiny SD 1.x-style and SD 2.x-style pipelines (U-Net,
//! VAE, CLIP / OpenCLIP text encoder, random f16 weights) written as LDM single files, which the
//! script checked diffusers' own converters map back to exactly those components. Here every
//! diffusers key of each component must come out of the single file with identical values and
//! nothing else (`finish`), and the text encoder must run through ClipTextModel as
//! transformers runs it. Plus the map on hand-written SD 1.5 / 2.x keys, and the errors.

mod common;

use common::{assert_tensor_close, fixture, fixture_tensor, rel_l2};
use revelio::io::{save_safetensors, SafeTensorsFile};
use revelio::models::clip::{ClipTextConfig, ClipTextModel};
use revelio::models::ldm::{open_clip_keys, unet_key, vae_key, SdKind, SingleFile};
use revelio::models::weights::{Transform, Weights};
use revelio::{DType, Device, Shape, Tensor};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn single_file(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/ldm/{kind}.safetensors"))
}

fn meta_json(f: &SafeTensorsFile, key: &str) -> Value {
    serde_json::from_str(&f.metadata()[key]).unwrap()
}

/// Every (key, shape) of `component` in the expected file, and its values, split from the
/// concatenated vector.
fn expected_tensors(f: &SafeTensorsFile, component: &str) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let flat = fixture_tensor(f, component).to_f32_vec().unwrap();
    let mut at = 0;
    let out: Vec<_> = meta_json(f, &format!("{component}_keys"))
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let key = e[0].as_str().unwrap().to_string();
            let shape: Vec<usize> = e[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            let n: usize = shape.iter().product();
            let values = flat[at..at + n].to_vec();
            at += n;
            (key, shape, values)
        })
        .collect();
    assert_eq!(at, flat.len(), "{component}: the key list does not cover the stored values");
    out
}

/// `w` holds exactly the expected keys (plus `extra`), each with identical values, and
/// `finish` accepts it once they are all read.
fn check_component(what: &str, w: &Weights, expected: &[(String, Vec<usize>, Vec<f32>)], extra: &[&str]) {
    let mut want: Vec<String> = expected.iter().map(|(k, _, _)| k.clone()).chain(extra.iter().map(|k| k.to_string())).collect();
    want.sort();
    let got = w.keys();
    let missing: Vec<_> = want.iter().filter(|k| !got.contains(k)).collect();
    let surplus: Vec<_> = got.iter().filter(|k| !want.contains(k)).collect();
    assert!(missing.is_empty() && surplus.is_empty(), "{what}: missing {missing:?}, unexpected {surplus:?}");
    for (key, shape, values) in expected {
        let t = w.get(key, shape).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(t.to_f32_vec().unwrap() == *values, "{what}: `{key}` differs from diffusers' conversion");
    }
    w.finish(|k| extra.contains(&k)).unwrap_or_else(|e| panic!("{what}: {e}"));
}

fn check_kind(kind: &str, want: SdKind) {
    let exp = fixture(&format!("ldm/{kind}_expected.safetensors"));
    let sf = SingleFile::open(&single_file(kind)).unwrap();
    assert_eq!(sf.kind(), want);
    let cpu = Device::Cpu;

    let unet = sf.unet_weights(&meta_json(&exp, "unet_config"), DType::F32, &cpu).unwrap();
    check_component(&format!("{kind} unet"), &unet, &expected_tensors(&exp, "unet"), &[]);
    let vae = sf.vae_weights(&meta_json(&exp, "vae_config"), DType::F32, &cpu).unwrap();
    check_component(&format!("{kind} vae"), &vae, &expected_tensors(&exp, "vae"), &[]);
    let te = sf.text_encoder_weights(DType::F32, &cpu).unwrap();
    let position_ids: &[&str] = if want == SdKind::Sd1 { &["text_model.embeddings.position_ids"] } else { &[] };
    check_component(&format!("{kind} text encoder"), &te, &expected_tensors(&exp, "text_encoder"), position_ids);

    // The text encoder end to end, as transformers runs it.
    let cfg = ClipTextConfig::from_value(&meta_json(&exp, "text_encoder_config")).unwrap();
    let te = sf.text_encoder_weights(DType::F32, &cpu).unwrap();
    let model = ClipTextModel::new(cfg, &te).unwrap();
    let ids = exp.load("clip.input_ids", DType::I64, &cpu).unwrap();
    let out = model.forward(&ids, false).unwrap();
    assert_tensor_close(&format!("{kind} clip last_hidden_state"), &out.last_hidden_state, &fixture_tensor(&exp, "clip.last_hidden_state"), 1e-4);
    assert_tensor_close(&format!("{kind} clip pooler_output"), &out.pooler_output, &fixture_tensor(&exp, "clip.pooler_output"), 1e-4);
    let err = rel_l2(&out.last_hidden_state.to_f32_vec().unwrap(), &fixture_tensor(&exp, "clip.last_hidden_state").to_f32_vec().unwrap());
    eprintln!("ldm {kind}: text encoder last_hidden_state relative L2 error {err:.2e}");
}

#[test]
fn sd1_single_file_equals_diffusers_conversion() {
    check_kind("sd1", SdKind::Sd1);
}

#[test]
fn sd2_single_file_equals_diffusers_conversion() {
    check_kind("sd2", SdKind::Sd2);
}

#[test]
fn sd15_unet_keys() {
    let l = 2;
    for (ldm, diffusers) in [
        ("input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"),
        ("output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"),
        ("output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias"),
        ("output_blocks.5.1.proj_out.weight", "up_blocks.1.attentions.2.proj_out.weight"),
        ("output_blocks.11.0.skip_connection.weight", "up_blocks.3.resnets.2.conv_shortcut.weight"),
        ("input_blocks.0.0.weight", "conv_in.weight"),
        ("input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"),
        ("input_blocks.4.0.in_layers.0.weight", "down_blocks.1.resnets.0.norm1.weight"),
        ("input_blocks.5.0.emb_layers.1.bias", "down_blocks.1.resnets.1.time_emb_proj.bias"),
        ("input_blocks.11.0.out_layers.3.weight", "down_blocks.3.resnets.1.conv2.weight"),
        ("middle_block.0.in_layers.2.weight", "mid_block.resnets.0.conv1.weight"),
        ("middle_block.1.transformer_blocks.0.ff.net.0.proj.weight", "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight"),
        ("middle_block.2.out_layers.0.bias", "mid_block.resnets.1.norm2.bias"),
        ("time_embed.2.weight", "time_embedding.linear_2.weight"),
        ("out.0.bias", "conv_norm_out.bias"),
        ("out.2.weight", "conv_out.weight"),
    ] {
        assert_eq!(unet_key(ldm, l).as_deref(), Some(diffusers), "{ldm}");
    }
    for unknown in ["label_emb.0.0.weight", "input_blocks.1.2.weight", "middle_block.3.x.weight", "input_blocks.1.0.in_layers.1.weight"] {
        assert_eq!(unet_key(unknown, l), None, "{unknown}");
    }
}

#[test]
fn sd15_vae_and_clip_keys() {
    let s = |d: &[usize]| Shape::from(d);
    let vae = |k: &str, shape: &[usize]| vae_key(k, &s(shape), 4);
    assert_eq!(vae("encoder.mid.attn_1.q.weight", &[512, 512, 1, 1]), Some(("encoder.mid_block.attentions.0.to_q.weight".into(), Transform::Reshape(vec![512, 512]))));
    assert_eq!(vae("decoder.mid.attn_1.proj_out.bias", &[512]), Some(("decoder.mid_block.attentions.0.to_out.0.bias".into(), Transform::Identity)));
    assert_eq!(vae("decoder.mid.attn_1.norm.weight", &[512]), Some(("decoder.mid_block.attentions.0.group_norm.weight".into(), Transform::Identity)));
    assert_eq!(vae("decoder.up.3.block.0.conv1.weight", &[512, 512, 3, 3]), Some(("decoder.up_blocks.0.resnets.0.conv1.weight".into(), Transform::Identity)));
    assert_eq!(vae("decoder.up.1.block.0.nin_shortcut.weight", &[256, 512, 1, 1]), Some(("decoder.up_blocks.2.resnets.0.conv_shortcut.weight".into(), Transform::Identity)));
    assert_eq!(vae("decoder.up.1.upsample.conv.bias", &[256]), Some(("decoder.up_blocks.2.upsamplers.0.conv.bias".into(), Transform::Identity)));
    assert_eq!(vae("encoder.down.2.downsample.conv.weight", &[512, 512, 3, 3]), Some(("encoder.down_blocks.2.downsamplers.0.conv.weight".into(), Transform::Identity)));
    assert_eq!(vae("encoder.mid.block_2.norm1.bias", &[512]), Some(("encoder.mid_block.resnets.1.norm1.bias".into(), Transform::Identity)));
    assert_eq!(vae("encoder.norm_out.weight", &[512]), Some(("encoder.conv_norm_out.weight".into(), Transform::Identity)));
    assert_eq!(vae("post_quant_conv.weight", &[4, 4, 1, 1]), Some(("post_quant_conv.weight".into(), Transform::Identity)));
    assert_eq!(vae("decoder.up.4.block.0.conv1.weight", &[1]), None);
    assert_eq!(vae("encoder.mid.attn_2.q.weight", &[1]), None);

    let clip = |k: &str, shape: &[usize]| open_clip_keys(k, &s(shape));
    let qkv = clip("transformer.resblocks.0.attn.in_proj_weight", &[3072, 1024]).unwrap();
    assert_eq!(
        qkv,
        ["q_proj", "k_proj", "v_proj"]
            .iter()
            .enumerate()
            .map(|(index, p)| (format!("text_model.encoder.layers.0.self_attn.{p}.weight"), Transform::Slice { index, parts: 3 }))
            .collect::<Vec<_>>()
    );
    assert_eq!(clip("transformer.resblocks.22.mlp.c_proj.bias", &[1024]), Some(vec![("text_model.encoder.layers.22.mlp.fc2.bias".into(), Transform::Identity)]));
    assert_eq!(clip("transformer.resblocks.5.ln_2.weight", &[1024]), Some(vec![("text_model.encoder.layers.5.layer_norm2.weight".into(), Transform::Identity)]));
    assert_eq!(clip("positional_embedding", &[77, 1024]), Some(vec![("text_model.embeddings.position_embedding.weight".into(), Transform::Identity)]));
    assert_eq!(clip("transformer.resblocks.23.ln_1.weight", &[1024]), Some(vec![]));
    assert_eq!(clip("text_projection", &[1024, 1024]), Some(vec![]));
    assert_eq!(clip("transformer.resblocks.0.attn.in_proj_bias", &[100]), None);
    assert_eq!(clip("visual.proj", &[1]), None);
}

#[test]
fn builtin_configs_follow_the_kind() {
    for (kind, context, layers) in [("sd1", 768, 12), ("sd2", 1024, 23)] {
        let sf = SingleFile::open(&single_file(kind)).unwrap();
        let unet = sf.unet_config();
        assert_eq!(unet["cross_attention_dim"], context);
        // Channels from the file's own convs (the tiny fixture's: 4 in, 4 out).
        assert_eq!((unet["in_channels"].as_u64(), unet["out_channels"].as_u64()), (Some(4), Some(4)));
        assert_eq!(sf.vae_config()["scaling_factor"], 0.18215);
        let te = ClipTextConfig::from_value(&sf.text_encoder_config()).unwrap();
        assert_eq!(te.num_hidden_layers, layers);
    }
    let sd1 = SingleFile::open(&single_file("sd1")).unwrap();
    let sd2 = SingleFile::open(&single_file("sd2")).unwrap();
    assert_eq!(sd1.scheduler_config(None).prediction_type, "epsilon");
    assert_eq!(sd2.scheduler_config(None).prediction_type, "v_prediction");
    assert_eq!(sd2.scheduler_config(Some(false)).prediction_type, "epsilon");
}

#[test]
fn wrong_configs_are_errors_naming_them() {
    let sd1 = SingleFile::open(&single_file("sd1")).unwrap();
    let exp = fixture("ldm/sd1_expected.safetensors");
    let mut cfg = meta_json(&exp, "unet_config");
    cfg["layers_per_block"] = 1.into();
    let e = sd1.unet_weights(&cfg, DType::F32, &Device::Cpu).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("layers_per_block 1"), "{e}");
    let mut vcfg = meta_json(&exp, "vae_config");
    vcfg["block_out_channels"] = serde_json::json!([2, 4, 4]);
    let e = sd1.vae_weights(&vcfg, DType::F32, &Device::Cpu).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("block_out_channels"), "{e}");
    // The built-in SD 1.5 config (4 levels) on the tiny file (3 levels).
    let e = sd1.unet_weights(&sd1.unet_config(), DType::F32, &Device::Cpu).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("9 input_blocks") && e.contains("needs 12"), "{e}");
    // A tensor of another shape than the model asks for: both shapes.
    let unet = sd1.unet_weights(&meta_json(&exp, "unet_config"), DType::F32, &Device::Cpu).unwrap();
    let e = unet.get("conv_in.weight", &[320, 4, 3, 3]).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("[2, 4, 3, 3]") && e.contains("[320, 4, 3, 3]"), "{e}");
    // A missing one: its key and the nearest.
    let e = unet.get("down_blocks.0.resnets.2.conv1.weight", &[2, 2, 3, 3]).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("missing tensor `down_blocks.0.resnets.2.conv1.weight`") && e.contains("down_blocks.0.resnets.1.conv1.weight"), "{e}");
}

/// A copy of the sd1 single file with `extra` tensors added, in a temp dir.
fn sd1_with(extra: &[(&str, Tensor)]) -> PathBuf {
    let f = SafeTensorsFile::open(single_file("sd1")).unwrap();
    let all = f.load_all(&Device::Cpu).unwrap();
    let mut tensors: Vec<(&str, &Tensor)> = all.iter().map(|(k, v)| (k.as_str(), v)).collect();
    tensors.extend(extra.iter().map(|(k, v)| (*k, v)));
    let path = std::env::temp_dir().join(format!("revelio-ldm-{}-{}.safetensors", std::process::id(), extra[0].0));
    save_safetensors(&path, &tensors, None).unwrap();
    path
}

#[test]
fn unplaced_tensors_of_a_component_are_errors() {
    let t = Tensor::zeros([2], DType::F32, &Device::Cpu).unwrap();
    let path = sd1_with(&[("first_stage_model.encoder.mid.attn_2.q.bias", t.clone()), ("first_stage_model.loss.logvar", t.clone())]);
    let sf = SingleFile::open(&path).unwrap();
    let exp = fixture("ldm/sd1_expected.safetensors");
    let w = sf.vae_weights(&meta_json(&exp, "vae_config"), DType::F32, &Device::Cpu).unwrap();
    for (key, shape, _) in expected_tensors(&exp, "vae") {
        w.get(&key, &shape).unwrap();
    }
    // The stray tensor keeps its LDM key; the training loss's tensors are not the VAE's.
    let e = w.finish(|_| false).unwrap_err().to_string();
    assert!(e.contains("1 tensor(s)") && e.contains("first_stage_model.encoder.mid.attn_2.q.bias"), "{e}");
    let _ = std::fs::remove_file(path);
}

#[test]
fn not_an_sd_checkpoint_is_an_error() {
    let path = std::env::temp_dir().join(format!("revelio-ldm-{}-none.safetensors", std::process::id()));
    let t = Tensor::zeros([2], DType::F32, &Device::Cpu).unwrap();
    save_safetensors(&path, &[("first_stage_model.encoder.conv_in.bias", &t)], None).unwrap();
    let e = SingleFile::open(&path).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("not an SD 1.x/2.x LDM checkpoint"), "{e}");
    // The context width decides when present: [.., 1024] is SD 2.x.
    let k = Tensor::zeros([1, 1024], DType::F16, &Device::Cpu).unwrap();
    save_safetensors(&path, &[("model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight", &k)], None).unwrap();
    let sf = SingleFile::open(&path).unwrap();
    assert_eq!(sf.kind(), SdKind::Sd2);
    let e = sf.vae_weights(&sf.vae_config(), DType::F32, &Device::Cpu).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("no VAE tensors"), "{e}");
    let _ = std::fs::remove_file(path);
}
