//! `revelio extract --prompt-from-clip` end to end on the CPU: the tiny CLIPModel of
//! tools/reference/make_clip_model_fixtures.py picks, for each image of a two-class ImageFolder,
//! the prompt transformers' logits_per_image rank first (the fixture's `best`); the choice is
//! recorded in manifest.json; the features equal those of the same images conditioned on those
//! texts as captions (so the chosen prompt is what Stable Diffusion sees); a second run with
//! another batch size gives the same prompts (features within 1e-5), a rerun resumes.

use revelio::features::store::{read_manifest, FeatureStore};
use revelio::io::SafeTensorsFile;
use revelio::{DType, Device};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The fixture script's PROMPTS: its TEMPLATES for class "cat", then for "dog".
const PROMPTS: [&str; 4] = ["a photo of a cat.", "a cat in the dark", "a photo of a dog.", "a dog in the dark"];
const IMAGES: [&str; 6] = ["big_down", "gray", "palette", "rgb_odd", "rgba", "tiny_up"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("revelio-extract-clip-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// cat/{big_down, gray, palette}, dog/{rgb_odd, rgba, tiny_up, zz_broken.jpg}: the fixture's
/// images in its order, then one that does not decode.
fn folder(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    for (k, n) in IMAGES.iter().enumerate() {
        let class = if k < 3 { "cat" } else { "dog" };
        std::fs::create_dir_all(data.join(class)).unwrap();
        std::fs::copy(root().join(format!("tests/fixtures/images/decoded/{n}.png")), data.join(class).join(format!("{n}.png"))).unwrap();
    }
    std::fs::write(data.join("dog/zz_broken.jpg"), b"\xff\xd8\xff not a jpeg").unwrap();
    data
}

fn extract(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let o = Command::new(env!("CARGO_BIN_EXE_revelio"))
        .args(["extract", "--model"])
        .arg(root().join("tests/fixtures/extract/sd"))
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--layers", "mid", "--timesteps", "25", "--resolution", "16", "--device", "cpu"])
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn features(out: &Path) -> Vec<f32> {
    FeatureStore::open(out).unwrap().read_all("mid", 25, DType::F32, &Device::Cpu).unwrap().to_f32_vec().unwrap()
}

#[test]
fn clip_chooses_the_prompt_sd_sees() {
    let dir = tmp("choose");
    let data = folder(&dir);
    let templates = dir.join("templates.txt");
    std::fs::write(&templates, "# the fixture's templates\na photo of a {}.\n\na {label} in the dark\n").unwrap();
    let clip = root().join("tests/fixtures/clip_model/vit_b32_tiny");
    let args = |batch: &'static str| -> Vec<String> {
        vec!["--prompt-from-clip".into(), clip.display().to_string(), "--prompt-templates".into(), templates.display().to_string(), "--batch-size".into(), batch.into()]
    };
    let a: Vec<String> = args("4");
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = dir.join("out");
    extract(&data, &out, &a);

    // 1. the choice is transformers' argmax, recorded per image; the broken image has none
    let f = SafeTensorsFile::open(root().join("tests/fixtures/clip_model/vit_b32_tiny.safetensors")).unwrap();
    let best = f.load("best", DType::I64, &Device::Cpu).unwrap().cpu_slice::<i64>("test").unwrap().to_vec();
    let m = read_manifest(&out).unwrap();
    let got: Vec<Option<String>> = m.images.iter().map(|e| e.prompt.clone()).collect();
    let mut want: Vec<Option<String>> = best.iter().map(|&b| Some(PROMPTS[b as usize].to_string())).collect();
    want.push(None);
    assert_eq!(got, want);
    assert_eq!(m.settings["conditioning"], "clip:a photo of a {}. | a {label} in the dark");
    assert!(m.settings["clip_model"].as_str().unwrap().ends_with("vit_b32_tiny"));

    // 2. the features are those of the chosen texts given as captions
    let csv = dir.join("captions.csv");
    let mut rows = String::from("path,label,caption\n");
    for (k, e) in m.images.iter().enumerate().take(IMAGES.len()) {
        rows += &format!("{},{},{}\n", data.join(&e.path).display(), k / 3, e.prompt.as_deref().unwrap());
    }
    std::fs::write(&csv, rows).unwrap();
    let by_caption = dir.join("captions");
    extract(&csv, &by_caption, &["--captions", "--batch-size", "4"]);
    let (clip_feats, caption_feats) = (features(&out), features(&by_caption));
    assert_eq!(clip_feats[..caption_feats.len()], caption_feats[..]);

    // 3. another batch size gives the same prompts and features; a rerun resumes (nothing to do)
    let b: Vec<String> = args("1");
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let other = dir.join("batch1");
    extract(&data, &other, &b);
    assert_eq!(read_manifest(&other).unwrap().images, m.images);
    // The U-Net at another batch size rounds differently (f32 sums): 1e-5 relative L2.
    let (x, y) = (features(&other), &clip_feats);
    let err = x.iter().zip(y).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>().sqrt() / y.iter().map(|&b| (b as f64).powi(2)).sum::<f64>().sqrt();
    assert!(err <= 1e-5, "batch 1 vs 4: relative L2 {err:.2e}");
    let o = extract(&data, &out, &a);
    assert!(String::from_utf8_lossy(&o.stdout).contains("7 already stored"), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(read_manifest(&out).unwrap().images, m.images);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_templates_are_refused() {
    let dir = tmp("bad");
    let data = folder(&dir);
    let templates = dir.join("templates.txt");
    std::fs::write(&templates, "a photo\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_revelio"))
        .args(["extract", "--model"])
        .arg(root().join("tests/fixtures/extract/sd"))
        .arg("--data")
        .arg(&data)
        .args(["--out"])
        .arg(dir.join("o"))
        .args(["--layers", "mid", "--timesteps", "25", "--device", "cpu", "--prompt-from-clip"])
        .arg(root().join("tests/fixtures/clip_model/vit_b32_tiny"))
        .arg("--prompt-templates")
        .arg(&templates)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("templates.txt") && err.contains("line 1"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
