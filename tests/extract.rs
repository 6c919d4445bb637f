//! `revelio extract` on the CPU with a tiny Stable Diffusion pipeline and a tiny DiT
//! (tools/reference/make_extract_fixtures.py): features equal to the reference pipeline run in
//! diffusers, and to our models run directly; independent of batch size, shard size and part;
//! resumable after a kill; parts merged; the latent cache reused; bad input named.

mod common;

use revelio::features::conditioning::{Conditioning, DitClass};
use revelio::models::pipeline::Posterior;
use revelio::features::dataset::DatasetOptions;
use revelio::features::extract::{extract, ExtractOptions};
use revelio::features::image::{Preprocess, RgbImage};
use revelio::features::merge::{find_parts, merge_parts};
use revelio::features::store::{FeatureStore, Pooling};
use revelio::models::clip::{ClipTextModel, ClipTokenizer};
use revelio::models::ddim::Ddim;
use revelio::models::unet::UNet2DConditionModel;
use revelio::models::vae::AutoencoderKL;
use revelio::{rng, DType, Device, Tensor};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sd() -> PathBuf {
    root().join("tests/fixtures/extract/sd")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("revelio-extract-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The script's IMAGES (PIL's decodings) as an ImageFolder in that order, plus a broken file
/// last: classes a (3 images) and b (3 images + the broken one).
fn reference_folder(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let names = ["big_down", "gray", "palette", "rgb_odd", "rgba", "tiny_up"];
    for (k, n) in names.iter().enumerate() {
        let class = if k < 3 { "a" } else { "b" };
        std::fs::create_dir_all(data.join(class)).unwrap();
        std::fs::copy(root().join(format!("tests/fixtures/images/decoded/{n}.png")), data.join(class).join(format!("{n}.png"))).unwrap();
    }
    std::fs::write(data.join("b/zz_broken.jpg"), b"\xff\xd8\xff not a jpeg").unwrap();
    data
}

/// `n` small generated images in two classes.
fn many_images(dir: &Path, n: usize) -> PathBuf {
    let data = dir.join("many");
    for i in 0..n {
        let class = if i % 3 == 0 { "x" } else { "y" };
        std::fs::create_dir_all(data.join(class)).unwrap();
        let img = image::RgbImage::from_fn(7, 5, |x, y| image::Rgb([(i * 7 + x as usize) as u8, (i * 3 + y as usize * 20) as u8, (i * 11) as u8]));
        img.save_with_format(data.join(class).join(format!("{i:04}.png")), image::ImageFormat::Png).unwrap();
    }
    std::fs::write(data.join("y/0100_broken.png"), b"\x89PNG broken").unwrap();
    data
}

fn options(model: &Path, data: &Path, out: &Path) -> ExtractOptions {
    ExtractOptions {
        model: model.to_path_buf(),
        dataset: data.to_path_buf(),
        dataset_options: DatasetOptions::default(),
        out: out.to_path_buf(),
        layers: vec!["mid".into(), "up.0".into(), "up.1".into()],
        timesteps: vec![25, 300],
        resolution: 16,
        batch_size: 4,
        pooling: Pooling::Mean,
        dtype: DType::F32,
        model_dtype: DType::F32,
        device: Device::Cpu,
        seed: 5,
        noise_draws: 1,
        posterior: Posterior::Mean,
        conditioning: Conditioning::Empty,
        dit_noise: false,
        dit_class: DitClass::Null,
        part: (0, 1),
        shard_size: None,
        latent_cache: None,
        workers: Some(2),
        max_shards: None,
    }
}

fn read(store: &Path, layer: &str, t: usize) -> Vec<f32> {
    FeatureStore::open(store).unwrap().read_all(layer, t, DType::F32, &Device::Cpu).unwrap().to_f32_vec().unwrap()
}

fn expected(key: &str) -> Vec<f32> {
    let f = common::fixture("extract/expected.safetensors");
    common::fixture_tensor(&f, key).to_f32_vec().unwrap()
}

#[test]
fn sd_features_match_the_reference_pipeline() {
    let dir = tmp("sd-ref");
    let data = reference_folder(&dir);
    let out = dir.join("out");
    let s = extract(&options(&sd(), &data, &out), false).unwrap();
    assert_eq!((s.processed, s.failures), (7, 1));
    let store = FeatureStore::open(&out).unwrap();
    assert_eq!(store.len(), 7);
    assert_eq!(store.split_indices(""), (0..6).collect::<Vec<_>>());
    assert_eq!(store.manifest().failures[0].path, "b/zz_broken.jpg");
    for layer in ["mid", "up.0", "up.1"] {
        for t in [25, 300] {
            let got = read(&out, layer, t);
            let want = expected(&format!("sd.{layer}.t{t}"));
            let c = want.len() / 6;
            common::assert_close(&format!("{layer} at t={t}"), &got[..6 * c], &want, 1e-5);
            assert!(got[6 * c..].iter().all(|&v| v == 0.0), "the broken image's row is zeros");
        }
    }
    // The full maps, stored in bf16.
    let out2 = dir.join("maps");
    let opts = ExtractOptions { layers: vec!["up.1".into()], timesteps: vec![25], pooling: Pooling::None, dtype: DType::BF16, ..options(&sd(), &data, &out2) };
    extract(&opts, false).unwrap();
    let got = read(&out2, "up.1", 25);
    let want = expected("sd.up.1.t25.map");
    assert_eq!(FeatureStore::open(&out2).unwrap().feature_shape("up.1", 25).unwrap(), [8, 8, 8]);
    common::assert_close("up.1 maps (bf16 storage)", &got[..want.len()], &want, 4e-3);
}

#[test]
fn dit_features_match_the_reference() {
    let dir = tmp("dit-ref");
    let data = reference_folder(&dir);
    let model = dir.join("dit");
    for (from, to) in [("tests/fixtures/dit/c1000/transformer", "transformer"), ("tests/fixtures/extract/sd/vae", "vae")] {
        std::fs::create_dir_all(model.join(to)).unwrap();
        for f in std::fs::read_dir(root().join(from)).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), model.join(to).join(f.file_name())).unwrap();
        }
    }
    let out = dir.join("out");
    let opts = ExtractOptions { layers: vec!["block.0".into(), "block.1".into()], timesteps: vec![25], ..options(&model, &data, &out) };
    extract(&opts, false).unwrap();
    for k in [0, 1] {
        let want = expected(&format!("dit.block.{k}"));
        common::assert_close(&format!("DiT block {k}"), &read(&out, &format!("block.{k}"), 25)[..want.len()], &want, 1e-5);
    }
    // Real noising and labels change the features; a bad layer lists DiT's taps.
    let out2 = dir.join("noised");
    extract(&ExtractOptions { dit_noise: true, dit_class: DitClass::Label, out: out2.clone(), ..opts.clone() }, false).unwrap();
    assert_ne!(read(&out2, "block.0", 25), read(&out, "block.0", 25));
    let err = extract(&ExtractOptions { layers: vec!["mid".into()], out: dir.join("bad"), ..opts }, false).unwrap_err().to_string();
    assert!(err.contains("block.N"), "{err}");
}

/// Our models run by hand on one image: the features `extract` must store.
fn direct(data: &Path, index: usize, t: usize, draws: usize, prompt: &str) -> Vec<Vec<f32>> {
    let cpu = Device::Cpu;
    let unet = UNet2DConditionModel::load(&sd().join("unet"), DType::F32, &cpu).unwrap();
    let vae = AutoencoderKL::load(&sd().join("vae"), DType::F32, &cpu).unwrap();
    let text = ClipTextModel::load(&sd().join("text_encoder"), DType::F32, &cpu).unwrap();
    let tok = ClipTokenizer::from_dir(&sd().join("tokenizer")).unwrap();
    let ddim = Ddim::new(revelio::models::ddim::DdimConfig::sd15()).unwrap();
    let ds = revelio::features::Dataset::open(data, &DatasetOptions::default()).unwrap();
    let img: RgbImage = ds.load_image(index).unwrap();
    let x = Tensor::from_vec(Preprocess::Eval { resolution: 16 }.apply(&img, index).unwrap(), [1, 3, 16, 16], &cpu).unwrap();
    let z = vae.encode_scaled(&x, None).unwrap();
    let ctx = text.forward(&tok.encode_batch(&[prompt], 77).unwrap(), false).unwrap().last_hidden_state;
    let mut sums = vec![vec![0.0f32; 0]; 3];
    for d in 0..draws {
        let eps = Tensor::from_vec(rng::normal_vec(rng::derive(5, &[index as u64, t as u64, d as u64]), 0, 4 * 8 * 8), [1, 4, 8, 8], &cpu).unwrap();
        let xt = ddim.add_noise(&z, &eps, &[t]).unwrap();
        let mut taps = unet.taps(&["mid", "up.0", "up.1"], false).unwrap();
        unet.forward(&xt, &Tensor::from_vec(vec![t as f32], [1], &cpu).unwrap(), &ctx, &mut taps).unwrap();
        let vals = taps.into_values().unwrap();
        for (k, name) in ["mid", "up.0", "up.1"].iter().enumerate() {
            let p = revelio::ops::global_avg_pool(&vals[*name]).unwrap().to_f32_vec().unwrap();
            if sums[k].is_empty() {
                sums[k] = p;
            } else {
                sums[k].iter_mut().zip(&p).for_each(|(a, b)| *a += b);
            }
        }
    }
    sums.into_iter().map(|v| v.into_iter().map(|x| x / draws as f32).collect()).collect()
}

#[test]
fn features_equal_the_models_run_directly() {
    let dir = tmp("direct");
    let data = reference_folder(&dir);
    // Two noise draws averaged, and a prompt template with class names.
    let out = dir.join("out");
    let opts = ExtractOptions {
        noise_draws: 2,
        conditioning: Conditioning::Prompt("a photo of a {label}".into()),
        timesteps: vec![300],
        ..options(&sd(), &data, &out)
    };
    extract(&opts, false).unwrap();
    for index in [1, 4] {
        let label = if index < 3 { "a" } else { "b" };
        let want = direct(&data, index, 300, 2, &format!("a photo of a {label}"));
        for (k, layer) in ["mid", "up.0", "up.1"].iter().enumerate() {
            let all = read(&out, layer, 300);
            let c = want[k].len();
            common::assert_close(&format!("{layer} of image {index}"), &all[index * c..(index + 1) * c], &want[k], 1e-6);
        }
    }
    let single = direct(&data, 1, 300, 1, "a photo of a a");
    let c = single[0].len();
    assert_ne!(&read(&out, "mid", 300)[c..2 * c], &single[0][..], "two draws differ from one");
}

#[test]
fn results_do_not_depend_on_batch_shard_or_part() {
    let dir = tmp("grid");
    let data = many_images(&dir, 300);
    let base = |out: &str| ExtractOptions { layers: vec!["mid".into(), "up.1".into()], timesteps: vec![50], ..options(&sd(), &data, &dir.join(out)) };
    let one = extract(&ExtractOptions { batch_size: 16, ..base("one") }, false).unwrap();
    assert_eq!((one.processed, one.failures), (301, 1));
    let want = read(&dir.join("one"), "up.1", 50);
    // Other batch and shard sizes: the same features (batch-size independent arithmetic).
    extract(&ExtractOptions { batch_size: 3, shard_size: Some(32), ..base("small") }, false).unwrap();
    common::assert_close("batch 3, shards of 32", &read(&dir.join("small"), "up.1", 50), &want, 1e-6);
    // Two parts, merged: identical.
    for i in 0..2 {
        let s = extract(&ExtractOptions { batch_size: 16, part: (i, 2), ..base("parts") }, false).unwrap();
        assert_eq!(s.images, if i == 0 { 256 } else { 45 });
    }
    let err = FeatureStore::open(dir.join("parts/part-00000-of-00002")).err().unwrap().to_string();
    assert!(err.contains("features merge"), "{err}");
    let parts = find_parts(&dir.join("parts")).unwrap();
    merge_parts(&parts, &dir.join("parts")).unwrap();
    assert!(!dir.join("parts/part-00000-of-00002").exists());
    let merged = FeatureStore::open(dir.join("parts")).unwrap();
    assert_eq!(merged.len(), 301);
    assert_eq!(merged.manifest().failures.len(), 1);
    assert!(merged.manifest().settings.get("part").is_none());
    assert_eq!(read(&dir.join("parts"), "up.1", 50), want);
    assert_eq!(read(&dir.join("parts"), "mid", 50), read(&dir.join("one"), "mid", 50));
}

#[test]
fn merge_refuses_missing_or_incomplete_parts() {
    let dir = tmp("merge-bad");
    let data = many_images(&dir, 300);
    let opts = ExtractOptions { layers: vec!["mid".into()], timesteps: vec![25], shard_size: Some(64), ..options(&sd(), &data, &dir.join("out")) };
    extract(&ExtractOptions { part: (0, 2), max_shards: Some(1), ..opts.clone() }, false).unwrap();
    let err = find_parts(&dir.join("out")).unwrap_err().to_string();
    assert!(err.contains("parts 2/2 have not been written"), "{err}");
    extract(&ExtractOptions { part: (1, 2), ..opts.clone() }, false).unwrap();
    let parts = find_parts(&dir.join("out")).unwrap();
    let err = merge_parts(&parts, &dir.join("out")).unwrap_err().to_string();
    assert!(err.contains("images 64..") && err.contains("rerun"), "{err}");
    extract(&ExtractOptions { part: (0, 2), ..opts }, false).unwrap();
    merge_parts(&parts, &dir.join("out")).unwrap();
    assert_eq!(FeatureStore::open(dir.join("out")).unwrap().len(), 301);
}

fn extract_cmd(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_revelio"));
    c.args(["extract", "--model"]).arg(sd()).arg("--data").arg(data).arg("--out").arg(out);
    c.args(["--layers", "mid,up.0", "--timesteps", "25,300", "--resolution", "16", "--device", "cpu", "--batch-size", "2", "--shard-size", "4"]);
    c.args(extra);
    c
}

#[test]
fn resume_after_a_kill_gives_identical_features() {
    let dir = tmp("resume");
    let data = many_images(&dir, 60);
    let full = dir.join("full");
    assert!(extract_cmd(&data, &full, &[]).output().unwrap().status.success());
    // Stopped cleanly after two shards, then killed part-way, then finished.
    let out = dir.join("out");
    let o = extract_cmd(&data, &out, &["--max-shards", "2"]).output().unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("stopped after 2 shards"));
    assert_eq!(FeatureStore::open(&out).unwrap().len(), 8);
    let mut child = extract_cmd(&data, &out, &[]).spawn().unwrap();
    let t0 = std::time::Instant::now();
    while t0.elapsed().as_secs() < 60 {
        let shards = revelio::features::store::read_manifest(&out).map(|m| m.shards.len()).unwrap_or(0);
        if shards > 3 || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    let o = extract_cmd(&data, &out, &[]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (layer, t) in [("mid", 25), ("up.0", 300)] {
        assert_eq!(read(&out, layer, t), read(&full, layer, t), "{layer} at {t}");
    }
    assert_eq!(FeatureStore::open(&out).unwrap().manifest().failures, FeatureStore::open(&full).unwrap().manifest().failures);
    // Another run's settings in the same folder is refused.
    let o = extract_cmd(&data, &out, &["--seed", "9"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("other settings"));
}

#[test]
fn latent_cache_is_reused_across_runs() {
    let dir = tmp("cache");
    let data = reference_folder(&dir);
    let cache = dir.join("latents");
    let first = extract(&ExtractOptions { latent_cache: Some(cache.clone()), ..options(&sd(), &data, &dir.join("a")) }, false).unwrap();
    assert!(first.decode > std::time::Duration::ZERO);
    // Other timesteps and layers later: no decoding, the same features as without a cache.
    let opts = ExtractOptions { timesteps: vec![100], layers: vec!["up.1".into()], ..options(&sd(), &data, &dir.join("b")) };
    let second = extract(&ExtractOptions { latent_cache: Some(cache.clone()), ..opts.clone() }, false).unwrap();
    assert_eq!(second.decode, std::time::Duration::ZERO);
    assert_eq!(second.failures, 1);
    extract(&ExtractOptions { out: dir.join("c"), ..opts }, false).unwrap();
    assert_eq!(read(&dir.join("b"), "up.1", 100), read(&dir.join("c"), "up.1", 100));
    assert_eq!(FeatureStore::open(dir.join("b")).unwrap().manifest().failures.len(), 1);
}

#[test]
fn bad_input_is_named() {
    let dir = tmp("bad");
    let data = reference_folder(&dir);
    let run = |o: ExtractOptions| extract(&o, false).unwrap_err().to_string();
    let base = || options(&sd(), &data, &dir.join("out"));
    let err = run(ExtractOptions { layers: vec!["up.7".into()], ..base() });
    assert!(err.contains("unknown U-Net tap `up.7`") && err.contains("mid_block"), "{err}");
    let err = run(ExtractOptions { timesteps: vec![25, 1000], ..base() });
    assert!(err.contains("1000 is out of range") && err.contains("0..=999"), "{err}");
    let err = run(ExtractOptions { model: sd().join("unet"), ..base() });
    assert!(err.contains("a single UNet2DConditionModel component"), "{err}");
    let err = run(ExtractOptions { model: dir.clone(), ..base() });
    assert!(err.contains("not a diffusers pipeline folder"), "{err}");
    std::fs::create_dir_all(dir.join("empty/cls")).unwrap();
    let err = run(ExtractOptions { dataset: dir.join("empty"), ..base() });
    assert!(err.contains("no images"), "{err}");
    let err = run(ExtractOptions { conditioning: Conditioning::Captions, ..base() });
    assert!(err.contains("has no caption"), "{err}");
    let err = run(ExtractOptions { shard_size: Some(3), ..base() });
    assert!(err.contains("power of two"), "{err}");
    // CLI parsing errors name the flag.
    let o = Command::new(env!("CARGO_BIN_EXE_revelio")).args(["extract", "--model", "m", "--data", "d", "--out", "o", "--shard", "3/2"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("--shard 3/2"));
}

#[test]
fn parquet_dataset_with_captions_through_the_cli() {
    let dir = tmp("parquet");
    let out = dir.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_revelio"))
        .args(["extract", "--model"])
        .arg(sd())
        .arg("--data")
        .arg(root().join("tests/fixtures/datasets/hf"))
        .arg("--out")
        .arg(&out)
        .args(["--split", "train", "--captions", "--caption-column", "text", "--layers", "up.1", "--timesteps", "10"])
        .args(["--resolution", "16", "--device", "cpu", "--pooling", "avg:2x2", "--dtype", "f16"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 failures"));
    let store = FeatureStore::open(&out).unwrap();
    let m = store.manifest();
    assert_eq!(m.class_names, ["zebra", "cat", "dog"]);
    assert_eq!(m.failures[0].path, "data/train-00001-of-00002.parquet#1");
    assert_eq!(m.settings["conditioning"], "captions");
    assert_eq!(store.feature_shape("up.1", 10).unwrap(), [8, 2, 2]);
    let want: Vec<i64> = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(root().join("tests/fixtures/datasets/expected.json")).unwrap())
        .unwrap()["train"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_i64().unwrap())
        .collect();
    assert_eq!(store.labels(), want);
    // The store records its dataset, so analysis can read the images back (parquet rows too).
    let ds = revelio::features::dataset::reopen(m).unwrap();
    assert_eq!(ds.entries(), &m.images[..]);
    assert!(ds.load_image(0).is_ok());
    // Captions change the features: the same run with the empty prompt differs.
    let opts = ExtractOptions {
        dataset: root().join("tests/fixtures/datasets/hf"),
        dataset_options: DatasetOptions { split: Some("train".into()), ..Default::default() },
        layers: vec!["up.1".into()],
        timesteps: vec![10],
        pooling: Pooling::Avg(2, 2),
        ..options(&sd(), &dir, &dir.join("empty"))
    };
    extract(&opts, false).unwrap();
    assert_ne!(read(&dir.join("empty"), "up.1", 10)[..32], read(&out, "up.1", 10)[..32]);
}
