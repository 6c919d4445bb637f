//! CLIPModel (both towers, projections, logit scale) against transformers 5.25's CLIPModel. The
//! fixtures come from tools/reference/make_clip_model_fixtures.py: two random-weight models
//! with every parameter perturbed (a ViT-B/32-like one at 32 px with patch 8, two layers,
//! quick_gelu; an odd one at 30 px with patch 6, one layer, gelu, head dims 5 and 6, projection
//! 7), six test images preprocessed by transformers' CLIPImageProcessorPil and four prompts.
//! Every vision hidden state (in execution order, so a failure names the first that diverges),
//! the pooled output, both features, both normalized embeddings and logits_per_image agree within
//! 1e-4 relative L2 in f32 on the CPU, and the best prompt per image is transformers' argmax.

mod common;

use common::{assert_tensor_close, fixture, fixture_tensor, rel_l2};
use revelio::models::clip::{normalize_rows, ClipModel};
use revelio::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

const CONFIGS: [&str; 2] = ["vit_b32_tiny", "odd"];
const TOL: f64 = 1e-4;

fn folder(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/clip_model")
        .join(name)
}

fn argmax_rows(t: &Tensor) -> Vec<i64> {
    let (n, p) = t.dims2("test").unwrap();
    let v = t.to_f32_vec().unwrap();
    (0..n)
        .map(|r| {
            let row = &v[r * p..(r + 1) * p];
            (0..p).fold(0, |b, j| if row[j] > row[b] { j } else { b }) as i64
        })
        .collect()
}

#[test]
fn matches_transformers() {
    for name in CONFIGS {
        let f = fixture(&format!("clip_model/{name}.safetensors"));
        let model = ClipModel::load(&folder(name), DType::F32, &Device::Cpu)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let pixels = fixture_tensor(&f, "pixel_values");
        let (vis, image_features) = model.image_features(&pixels, true).unwrap();
        let mut worst = 0.0f64;
        let mut check = |what: &str, got: &Tensor| {
            let want = fixture_tensor(&f, what);
            assert_tensor_close(&format!("{name} {what}"), got, &want, TOL);
            worst = worst.max(rel_l2(
                &got.to_f32_vec().unwrap(),
                &want.to_f32_vec().unwrap(),
            ));
        };
        assert_eq!(
            vis.hidden_states.len(),
            model.vision_model.config().num_hidden_layers + 1,
            "{name}: hidden state count"
        );
        for (i, h) in vis.hidden_states.iter().enumerate() {
            check(&format!("vision.hidden_states.{i}"), h);
        }
        check("vision.pooler_output", &vis.pooler_output);
        check("image_features", &image_features);
        let ids = f.load("input_ids", DType::I64, &Device::Cpu).unwrap();
        let text_features = model.text_features(&ids).unwrap();
        check("text_features", &text_features);
        let (image_embeds, text_embeds) = (
            normalize_rows(&image_features).unwrap(),
            normalize_rows(&text_features).unwrap(),
        );
        check("image_embeds", &image_embeds);
        check("text_embeds", &text_embeds);
        let logits = model.logits_per_image(&image_embeds, &text_embeds).unwrap();
        check("logits_per_image", &logits);
        let best: Vec<i64> = f
            .load("best", DType::I64, &Device::Cpu)
            .unwrap()
            .cpu_slice::<i64>("test")
            .unwrap()
            .to_vec();
        assert_eq!(argmax_rows(&logits), best, "{name}: best prompt per image");
        eprintln!("clip model {name}: max relative L2 error {worst:.2e}");
    }
}

#[test]
fn the_folder_tokenizer_gives_the_fixture_ids() {
    let f = fixture("clip_model/vit_b32_tiny.safetensors");
    let model = ClipModel::load(&folder("vit_b32_tiny"), DType::F32, &Device::Cpu).unwrap();
    let prompts = [
        "a photo of a cat.",
        "a cat in the dark",
        "a photo of a dog.",
        "a dog in the dark",
    ];
    let ids = model.tokenize(&prompts).unwrap();
    let want = f.load("input_ids", DType::I64, &Device::Cpu).unwrap();
    assert_eq!(
        ids.cpu_slice::<i64>("test").unwrap(),
        want.cpu_slice::<i64>("test").unwrap()
    );
}

#[test]
fn missing_tensors_and_keys_are_named() {
    let dir = std::env::temp_dir().join(format!("revelio-clip-model-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = folder("odd");
    // A checkpoint without visual_projection.weight.
    let st = revelio::io::SafeTensorsFile::open(src.join("model.safetensors")).unwrap();
    let tensors: Vec<(String, Tensor)> = st
        .keys()
        .into_iter()
        .filter(|k| k != "visual_projection.weight")
        .map(|k| {
            let t = st.load(&k, DType::F32, &Device::Cpu).unwrap();
            (k, t)
        })
        .collect();
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    revelio::io::save_safetensors(dir.join("model.safetensors"), &refs, None).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let err = ClipModel::load(&dir, DType::F32, &Device::Cpu)
        .err()
        .expect("a missing tensor is an error")
        .to_string();
    assert!(err.contains("visual_projection.weight"), "{err}");
    // A config.json without vision_config.
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    cfg.as_object_mut().unwrap().remove("vision_config");
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let err = ClipModel::load(&dir, DType::F32, &Device::Cpu)
        .err()
        .expect("a missing key is an error")
        .to_string();
    assert!(
        err.contains("vision_config") && err.contains("config.json"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// CLIPImageProcessorPil's pixel values (PIL's bicubic resize, the floor-offset center crop,
/// rescale, CLIP's mean and std from preprocessor_config.json) for images that are scaled down
/// and up: equal up to f32 rounding (max |diff| <= 1e-5).
#[test]
fn preprocessing_matches_transformers() {
    use revelio::features::clip_prompts::ClipPreprocess;
    use revelio::features::RgbImage;
    let images = ["big_down", "gray", "palette", "rgb_odd", "rgba", "tiny_up"];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in CONFIGS {
        let f = fixture(&format!("clip_model/{name}.safetensors"));
        let want = fixture_tensor(&f, "pixel_values").to_f32_vec().unwrap();
        let size = f.load("pixel_values", DType::F32, &Device::Cpu).unwrap().dims()[2];
        let pre = ClipPreprocess::from_file(&folder(name).join("preprocessor_config.json"), size).unwrap();
        let mut got = Vec::new();
        for n in images {
            let img = RgbImage::open(&root.join(format!("tests/fixtures/images/decoded/{n}.png"))).unwrap();
            got.extend(pre.apply(&img).unwrap());
        }
        assert_eq!(got.len(), want.len(), "{name}: pixel count");
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-5, "{name}: pixel values differ from transformers by up to {worst}");
        eprintln!("clip preprocessing {name}: max |diff| {worst:.2e}");
    }
}
