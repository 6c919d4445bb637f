//! The CLIP text encoder on CUDA against transformers' outputs (tests/fixtures/clip, made by
//! tools/reference/make_clip_fixtures.py): f32 within 1e-4 relative L2, bf16 within 2e-2 (weights
//! and activations rounded to 8 bits of mantissa, ~4e-3 each, over a few layers), every hidden
//! state in execution order so a failure names the first one that diverges. Also the single-file
//! SD 1.x/2.x text encoders (tests/fixtures/ldm) end to end.

use crate::common::*;
use revelio::io::SafeTensorsFile;
use revelio::models::clip::{ClipSkip, ClipTextConfig, ClipTextModel};
use revelio::models::ldm::SingleFile;
use revelio::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

const CONFIGS: [&str; 3] = ["quick_gelu_legacy", "gelu_eos500", "gelu_tanh_short"];

fn tol(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-4,
        _ => 2e-2,
    }
}

fn folder(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip").join(name)
}

fn ids(f: &SafeTensorsFile, key: &str) -> Tensor {
    f.load(key, DType::I64, &Device::Cpu).unwrap()
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn clip_text_model_matches_transformers_on_cuda() {
    let dev = cuda();
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        for name in CONFIGS {
            let f = fixture(&format!("clip/{name}.safetensors"));
            let model = ClipTextModel::load(&folder(name), dtype, &dev).unwrap_or_else(|e| panic!("{name} {dtype}: {e}"));
            let ids = ids(&f, "input_ids");
            let out = model.forward(&ids.to_device(&dev).unwrap(), true).unwrap();
            let what = |t: &str| format!("{name} ({dtype}) {t}");
            for (i, h) in out.hidden_states.iter().enumerate() {
                assert!(h.device().is_cuda() && h.dtype() == dtype);
                let key = format!("hidden_states.{i}");
                assert_tensor_close(&what(&key), h, &fixture_tensor(&f, &key), tol(dtype));
            }
            assert_tensor_close(&what("last_hidden_state"), &out.last_hidden_state, &fixture_tensor(&f, "last_hidden_state"), tol(dtype));
            assert_tensor_close(&what("pooler_output"), &out.pooler_output, &fixture_tensor(&f, "pooler_output"), tol(dtype));
            let l = model.config().num_hidden_layers;
            let skipped = model.encode(&ids, ClipSkip::diffusers(l - 1)).unwrap();
            assert_tensor_close(&what("clip_skip"), &skipped, &fixture_tensor(&f, &format!("clip_skip.{}", l - 1)), tol(dtype));
        }
    }
}

#[test]
#[ignore = "needs a CUDA device: a GPU, or the simulated one (REVELIO_SIM)"]
fn single_file_text_encoders_on_cuda() {
    let dev = cuda();
    for kind in ["sd1", "sd2"] {
        let exp = fixture(&format!("ldm/{kind}_expected.safetensors"));
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/ldm/{kind}.safetensors"));
        let sf = SingleFile::open(&path).unwrap();
        let cfg: serde_json::Value = serde_json::from_str(&exp.metadata()["text_encoder_config"]).unwrap();
        for dtype in [DType::F32, DType::BF16] {
            let w = sf.text_encoder_weights(dtype, &dev).unwrap();
            let model = ClipTextModel::new(ClipTextConfig::from_value(&cfg).unwrap(), &w).unwrap();
            let out = model.forward(&ids(&exp, "clip.input_ids"), false).unwrap();
            let what = format!("{kind} ({dtype})");
            assert_tensor_close(&format!("{what} last_hidden_state"), &out.last_hidden_state, &fixture_tensor(&exp, "clip.last_hidden_state"), tol(dtype));
            assert_tensor_close(&format!("{what} pooler_output"), &out.pooler_output, &fixture_tensor(&exp, "clip.pooler_output"), tol(dtype));
        }
    }
}
