//! The CLIP text encoder against transformers 5.23's CLIPTextModel. The fixtures come from
//! tools/reference/make_clip_fixtures.py: three random-weight models with every parameter
//! perturbed (quick_gelu with the legacy eos_token_id 2, keys under `text_model.` plus the
//! `position_ids` buffer; gelu with eos_token_id 500, flat keys; gelu_pytorch_tanh with pad ==
//! eos on 16 tokens), two rows of ids each with the EOS at different positions. Every hidden
//! state (in execution order, so a failure names the first one that diverges), the last hidden
//! state and the pooled output agree within 1e-4 relative L2 in f32 on the CPU.

mod common;

use common::{assert_tensor_close, fixture, fixture_tensor, rel_l2};
use revelio::io::SafeTensorsFile;
use revelio::models::clip::{ClipSkip, ClipTextConfig, ClipTextModel};
use revelio::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

const CONFIGS: [&str; 3] = ["quick_gelu_legacy", "gelu_eos500", "gelu_tanh_short"];
const TOL: f64 = 1e-4;

fn folder(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip").join(name)
}

fn ids(f: &SafeTensorsFile) -> Tensor {
    f.load("input_ids", DType::I64, &Device::Cpu).unwrap()
}

/// Compares every output in execution order; returns the largest relative L2 error.
fn check_outputs(name: &str, model: &ClipTextModel, f: &SafeTensorsFile) -> f64 {
    let out = model.forward(&ids(f), true).unwrap_or_else(|e| panic!("{name}: {e}"));
    let layers = model.config().num_hidden_layers;
    assert_eq!(out.hidden_states.len(), layers + 1, "{name}: hidden state count");
    let mut worst = 0.0f64;
    let mut check = |what: String, got: &Tensor| {
        let want = fixture_tensor(f, &what);
        assert_tensor_close(&format!("{name} {what}"), got, &want, TOL);
        worst = worst.max(rel_l2(&got.to_f32_vec().unwrap(), &want.to_f32_vec().unwrap()));
    };
    for (i, h) in out.hidden_states.iter().enumerate() {
        check(format!("hidden_states.{i}"), h);
    }
    check("last_hidden_state".into(), &out.last_hidden_state);
    check("pooler_output".into(), &out.pooler_output);
    worst
}

#[test]
fn matches_transformers() {
    for name in CONFIGS {
        let f = fixture(&format!("clip/{name}.safetensors"));
        let model = ClipTextModel::load(&folder(name), DType::F32, &Device::Cpu).unwrap_or_else(|e| panic!("{name}: {e}"));
        let worst = check_outputs(name, &model, &f);
        eprintln!("clip {name}: max relative L2 error {worst:.2e}");
    }
}

#[test]
fn pooled_position_is_transformers_choice() {
    for name in CONFIGS {
        let f = fixture(&format!("clip/{name}.safetensors"));
        let model = ClipTextModel::load(&folder(name), DType::F32, &Device::Cpu).unwrap();
        let ids = ids(&f);
        let (b, s) = ids.dims2("test").unwrap();
        let got = model.pool_positions(&ids.to_vec::<i64>().unwrap(), b, s);
        let want: Vec<usize> = f.load("pool_index", DType::I64, &Device::Cpu).unwrap().to_vec::<i64>().unwrap().iter().map(|&v| v as usize).collect();
        assert_eq!(got, want, "{name}");
    }
    // The rules themselves: legacy eos 2 takes the first largest id; otherwise the first EOS, or 0.
    let f = folder("quick_gelu_legacy");
    let legacy = ClipTextModel::load(&f, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(legacy.pool_positions(&[0, 5, 9, 9, 1, 3, 2, 2], 2, 4), vec![2, 1]);
    let modern = ClipTextModel::load(&folder("gelu_eos500"), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(modern.pool_positions(&[0, 500, 999, 500, 1, 3, 2, 2], 2, 4), vec![1, 0]);
}

#[test]
fn clip_skip_returns_earlier_layers() {
    for name in CONFIGS {
        let f = fixture(&format!("clip/{name}.safetensors"));
        let model = ClipTextModel::load(&folder(name), DType::F32, &Device::Cpu).unwrap();
        let l = model.config().num_hidden_layers;
        let ids = ids(&f);
        let got = model.encode(&ids, ClipSkip::none()).unwrap();
        assert_tensor_close(&format!("{name} skip 0"), &got, &fixture_tensor(&f, "last_hidden_state"), TOL);
        for k in 1..l {
            let got = model.encode(&ids, ClipSkip::diffusers(k)).unwrap();
            assert_tensor_close(&format!("{name} clip_skip.{k}"), &got, &fixture_tensor(&f, &format!("clip_skip.{k}")), TOL);
            let raw = model.encode(&ids, ClipSkip { skip: k, final_layer_norm: false }).unwrap();
            assert_tensor_close(&format!("{name} skip {k} raw"), &raw, &fixture_tensor(&f, &format!("hidden_states.{}", l - k)), TOL);
        }
        let emb = model.encode(&ids, ClipSkip { skip: l, final_layer_norm: false }).unwrap();
        assert_tensor_close(&format!("{name} embeddings"), &emb, &fixture_tensor(&f, "hidden_states.0"), TOL);
        let err = model.encode(&ids, ClipSkip { skip: l + 1, final_layer_norm: true }).unwrap_err().to_string();
        assert!(err.contains(&format!("{} layers", l)), "{err}");
    }
}

#[test]
fn forward_without_hidden_states_and_with_i32_ids() {
    let name = "gelu_eos500";
    let f = fixture(&format!("clip/{name}.safetensors"));
    let model = ClipTextModel::load(&folder(name), DType::F32, &Device::Cpu).unwrap();
    let out = model.forward(&revelio::ops::to_dtype(&ids(&f), DType::I32).unwrap(), false).unwrap();
    assert!(out.hidden_states.is_empty());
    assert_tensor_close("last_hidden_state", &out.last_hidden_state, &fixture_tensor(&f, "last_hidden_state"), TOL);
    assert_tensor_close("pooler_output", &out.pooler_output, &fixture_tensor(&f, "pooler_output"), TOL);
}

#[test]
fn bad_inputs_are_errors_naming_them() {
    let model = ClipTextModel::load(&folder("gelu_tanh_short"), DType::F32, &Device::Cpu).unwrap();
    let long = Tensor::from_vec(vec![1i64; 78], [1, 78], &Device::Cpu).unwrap();
    let e = model.forward(&long, false).unwrap_err().to_string();
    assert!(e.contains("[1, 78]") && e.contains("77"), "{e}");
    let float_ids = Tensor::from_vec(vec![1.0f32; 4], [1, 4], &Device::Cpu).unwrap();
    let e = model.forward(&float_ids, false).unwrap_err().to_string();
    assert!(e.contains("i64 or i32"), "{e}");
    let out_of_vocab = Tensor::from_vec(vec![1i64, 100], [1, 2], &Device::Cpu).unwrap();
    let e = model.forward(&out_of_vocab, false).unwrap_err().to_string();
    assert!(e.contains("100"), "{e}");
    let flat = Tensor::from_vec(vec![1i64; 4], [4], &Device::Cpu).unwrap();
    assert!(model.forward(&flat, false).is_err());
}

/// A copy of fixture folder `name` in a fresh temp dir, with config.json edited by `edit`.
fn edited_copy(name: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("revelio-clip-{}-{}", std::process::id(), COUNT.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(folder(name).join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(folder(name).join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    dir
}

#[test]
fn wrong_configs_and_weights_are_errors_naming_them() {
    let load = |dir: &Path| ClipTextModel::load(dir, DType::F32, &Device::Cpu).map(|_| ()).unwrap_err().to_string();
    // More layers than the file has: the first missing tensor, by its full key.
    let e = load(&edited_copy("quick_gelu_legacy", |c| c["num_hidden_layers"] = 4.into()));
    assert!(e.contains("missing tensor `text_model.encoder.layers.3."), "{e}");
    // Fewer: the unused tensors of the last layer.
    let e = load(&edited_copy("gelu_eos500", |c| c["num_hidden_layers"] = 2.into()));
    assert!(e.contains("encoder.layers.2."), "{e}");
    // A wrong width: both shapes.
    let e = load(&edited_copy("gelu_eos500", |c| c["intermediate_size"] = 38.into()));
    assert!(e.contains("[37, 32]") && e.contains("[38, 32]"), "{e}");
    // Unsupported activation.
    let e = load(&edited_copy("gelu_eos500", |c| c["hidden_act"] = "silu".into()));
    assert!(e.contains("hidden_act \"silu\""), "{e}");
    // No weights at all.
    let empty = edited_copy("gelu_eos500", |_| ());
    std::fs::remove_file(empty.join("model.safetensors")).unwrap();
    assert!(load(&empty).contains("no weights found"));
}

#[test]
fn configs_read_as_transformers_writes_them() {
    let c = ClipTextConfig::from_file(&folder("quick_gelu_legacy").join("config.json")).unwrap();
    assert_eq!((c.hidden_size, c.num_hidden_layers, c.eos().unwrap()), (32, 3, 2));
    assert!(c.unknown_keys().is_empty(), "{:?}", c.unknown_keys());
}
