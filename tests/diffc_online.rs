//! Diff-C's online mode on the CPU with the tiny Stable Diffusion pipeline of the extract
//! fixtures: features equal to the pipeline run by hand with the library (train images:
//! augmentation and noise of the documented streams) and to what `revelio extract` stores (test
//! images with fixed noise); training runs, a resumed run equals an uninterrupted one; bad
//! datasets and layers give clear errors; the command line prints and writes the loop's figures.

mod common;

use revelio::diffc::data::{FeatureSource, Split, StoreSource, TokenLayout};
use revelio::diffc::online::{BatchPlan, OnlineOptions, OnlineSource, TestNoise, ONLINE_REPORT};
use revelio::diffc::train::{read_metrics, shuffle, train, ModelOptions, TrainConfig, CHECKPOINT, METRICS, WEIGHTS};
use revelio::features::conditioning::{Conditioning, DitClass};
use revelio::models::pipeline::{Pipeline, Posterior};
use revelio::features::dataset::{Dataset, DatasetOptions};
use revelio::features::extract::{extract, ExtractOptions};
use revelio::features::image::Preprocess;
use revelio::features::store::{FeatureStore, Pooling};
use revelio::{rng, DType, Device, Tensor};
use std::path::{Path, PathBuf};

const R: usize = 16;
const T: usize = 25;
const SEED: u64 = 7;

fn sd() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/extract/sd")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("revelio-diffc-online-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An image of class `class` (a colour ramp of its own) in one of three shapes.
fn picture(class: usize, i: usize) -> image::RgbImage {
    let (w, h) = [(24, 18), (18, 24), (20, 20)][i % 3];
    image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 9 + y * 5 + i as u32 * 13) as u8;
        if class == 0 {
            image::Rgb([v, 40, 255 - v])
        } else {
            image::Rgb([30, v, (y * 10) as u8])
        }
    })
}

/// An ImageFolder with train/ (6 images per class) and test/ (3 per class), classes cat and dog.
fn folder(dir: &Path) -> PathBuf {
    let root = dir.join("pets");
    for (split, n) in [("train", 6), ("test", 3)] {
        for (c, class) in ["cat", "dog"].iter().enumerate() {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                let k = if split == "train" { i } else { 100 + i };
                picture(c, k).save_with_format(d.join(format!("{i:02}.png")), image::ImageFormat::Png).unwrap();
            }
        }
    }
    root
}

fn options(data: &Path) -> OnlineOptions {
    OnlineOptions {
        model: sd(),
        dataset: data.to_path_buf(),
        format: None,
        columns: Default::default(),
        train_split: "train".into(),
        test_split: "test".into(),
        layer: "up.1".into(),
        timestep: T,
        resolution: R,
        model_dtype: DType::F32,
        device: Device::Cpu,
        seed: SEED,
        conditioning: Conditioning::Empty,
        test_noise: TestNoise::Epoch,
        dit_noise: false,
        dit_class: DitClass::Null,
        token_layout: TokenLayout::Map,
        workers: Some(2),
        plan: BatchPlan { batch_size: 4, test_batch_size: 4, epochs: 2 },
    }
}

/// Image `i` of `ds` through the pipeline by hand, with the library's pieces in the order
/// `revelio extract` runs them: `pre`, the VAE's posterior mean times the scaling factor, noise
/// from stream `noise_seed`, add_noise at T, the U-Net on the empty prompt up to up.1.
fn by_hand(bb: &mut Pipeline, ds: &Dataset, i: usize, pre: Preprocess, noise_seed: u64) -> Vec<f32> {
    let img = ds.load_image(i).unwrap();
    let x = Tensor::from_vec(pre.apply(&img, i).unwrap(), [1, 3, R, R], &Device::Cpu).unwrap();
    let z = bb.encode(&x, Posterior::Mean, 0, &[i]).unwrap();
    let eps = Tensor::from_vec(rng::normal_vec(noise_seed, 0, z.numel()), z.dims().to_vec(), &Device::Cpu).unwrap();
    let xt = bb.ddim.add_noise(&z, &eps, &[T]).unwrap();
    let ctx = Conditioning::Empty.encode(bb, &[&ds.entries()[i]], ds.class_names()).unwrap();
    let req = bb.resolve(&["up.1".to_string()]).unwrap();
    bb.record(&xt, T, Some(&ctx), None, &req, &[i]).unwrap().remove("up.1").unwrap().to_f32_vec().unwrap()
}

fn rows(src: &mut OnlineSource, split: Split, epoch: usize, items: &[usize]) -> Vec<Vec<f32>> {
    let f = src.features(split, epoch, items, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(f.dims(), [items.len(), 8, 8, 8]);
    let v = f.to_f32_vec().unwrap();
    v.chunks(v.len() / items.len()).map(|c| c.to_vec()).collect()
}

#[test]
fn train_features_equal_the_pipeline_run_by_hand() {
    let dir = tmp("by-hand");
    let data = folder(&dir);
    let mut src = OnlineSource::open(&options(&data)).unwrap();
    assert_eq!(src.feature_shape(), [8, 8, 8]);
    assert_eq!(src.class_names(), ["cat", "dog"]);
    assert_eq!(src.labels(Split::Train), [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
    assert_eq!(src.labels(Split::Test).len(), 6);

    let mut bb = Pipeline::load(&sd(), DType::F32, &Device::Cpu).unwrap();
    let train = Dataset::open(data.join("train"), &DatasetOptions::default()).unwrap();
    // The documented streams: s = derive(seed, [3]); crop and flip from Preprocess::Augment
    // seeded s, noise of image i in epoch e from derive(s, [e, i, 2]).
    let s = rng::derive(SEED, &[3]);
    let want = |bb: &mut Pipeline, epoch: usize, i: usize| {
        by_hand(bb, &train, i, Preprocess::Augment { resolution: R, seed: s, epoch: epoch as u64 }, rng::derive(s, &[epoch as u64, i as u64, 2]))
    };
    // The trainer's first batch (decoded ahead), then one off the plan (decoded on request).
    let first: Vec<usize> = shuffle(12, SEED, 0)[..4].to_vec();
    for items in [first.clone(), vec![5, 1, 3]] {
        for (got, &i) in rows(&mut src, Split::Train, 0, &items).iter().zip(&items) {
            common::assert_close(&format!("train image {i}, epoch 0"), got, &want(&mut bb, 0, i), 1e-5);
        }
    }
    // The next epoch draws another crop, flip and noise.
    let e1 = rows(&mut src, Split::Train, 1, &[first[0]]);
    common::assert_close("train image, epoch 1", &e1[0], &want(&mut bb, 1, first[0]), 1e-5);
    assert_ne!(e1[0], rows(&mut src, Split::Train, 0, &[first[0]])[0]);
    // Test images: Resize + CenterCrop, noise from derive(derive(seed, [4]), [e, i]).
    let test = Dataset::open(data.join("test"), &DatasetOptions::default()).unwrap();
    let got = rows(&mut src, Split::Test, 1, &[0, 1, 2, 3]);
    for (i, g) in got.iter().enumerate() {
        let w = by_hand(&mut bb, &test, i, Preprocess::Eval { resolution: R }, rng::derive(rng::derive(SEED, &[4]), &[1, i as u64]));
        common::assert_close(&format!("test image {i}, epoch 1"), g, &w, 1e-5);
    }
    let stats = src.stats();
    assert_eq!((stats.train_images, stats.test_images), (4 + 3 + 2, 4));
    assert!(stats.model_s > 0.0 && stats.vae_s > 0.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `revelio extract` of `dataset` with `model` at layer `layer`, t = T, R px, full maps, seed SEED.
fn extract_options(model: &Path, dataset: &Path, out: &Path, layer: &str) -> ExtractOptions {
    ExtractOptions {
        model: model.to_path_buf(),
        dataset: dataset.to_path_buf(),
        dataset_options: DatasetOptions::default(),
        out: out.to_path_buf(),
        layers: vec![layer.into()],
        timesteps: vec![T],
        resolution: R,
        batch_size: 5,
        pooling: Pooling::None,
        dtype: DType::F32,
        model_dtype: DType::F32,
        device: Device::Cpu,
        seed: SEED,
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

#[test]
fn fixed_test_noise_gives_what_extract_stores() {
    let dir = tmp("extract");
    let data = folder(&dir);
    let store = dir.join("store");
    let eo = extract_options(&sd(), &data.join("test"), &store, "up.1");
    extract(&eo, false).unwrap();
    let stored = FeatureStore::open(&store).unwrap().read_all("up.1", T, DType::F32, &Device::Cpu).unwrap().to_f32_vec().unwrap();

    let mut src = OnlineSource::open(&OnlineOptions { test_noise: TestNoise::Fixed, ..options(&data) }).unwrap();
    for epoch in [0, 1] {
        let got: Vec<f32> = [vec![0, 1, 2, 3], vec![4, 5]].iter().flat_map(|b| rows(&mut src, Split::Test, epoch, b).concat()).collect();
        common::assert_close(&format!("test split, epoch {epoch}, vs revelio extract"), &got, &stored, 1e-5);
    }
    // The reference's protocol: fresh test noise every epoch.
    let mut src = OnlineSource::open(&options(&data)).unwrap();
    assert_ne!(rows(&mut src, Split::Test, 0, &[0, 1, 2, 3]), rows(&mut src, Split::Test, 1, &[0, 1, 2, 3]));
    assert_eq!(src.describe()["test_noise"], "epoch");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// metrics.jsonl without the timings.
fn metrics_lines(run: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run.join(METRICS)).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("seconds");
            o.remove("train_images_per_s");
            v.to_string()
        })
        .collect()
}

#[test]
fn online_training_runs_and_resumes_exactly() {
    let dir = tmp("resume");
    let data = folder(&dir);
    let model = ModelOptions { widths: vec![8, 8], dropout: 0.2, num_classes: None };
    let cfg = |epochs| TrainConfig {
        epochs,
        cosine_epochs: 3,
        lr: 1e-3,
        weight_decay: 0.01,
        batch_size: 4,
        test_batch_size: 4,
        seed: SEED,
        dtype: "f32".into(),
    };
    let source = |epochs| OnlineSource::open(&OnlineOptions { plan: BatchPlan { batch_size: 4, test_batch_size: 4, epochs }, ..options(&data) }).unwrap();
    let mut whole_src = source(3);
    let whole = train(&mut whole_src, &model, &cfg(3), &dir.join("whole"), &Device::Cpu).unwrap();
    assert_eq!((whole.epochs, whole.num_classes, whole.train_images, whole.test_images), (3, 2, 12, 6));
    assert_eq!((whole_src.stats().train_images, whole_src.stats().test_images), (36, 18));
    assert_eq!(read_metrics(&dir.join("whole").join(METRICS)).unwrap().len(), 3);
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("whole/config.json")).unwrap()).unwrap();
    assert_eq!(config["source"]["kind"], "online");
    assert_eq!(config["source"]["layer"], "up.1");
    assert_eq!(config["feature_shape"], serde_json::json!([8, 8, 8]));

    // One epoch, then a new process resuming to three.
    train(&mut source(1), &model, &cfg(1), &dir.join("parts"), &Device::Cpu).unwrap();
    let resumed = train(&mut source(3), &model, &cfg(3), &dir.join("parts"), &Device::Cpu).unwrap();
    assert_eq!(resumed, whole);
    for f in [WEIGHTS, CHECKPOINT] {
        assert!(common::file_bits(&dir.join("whole").join(f)) == common::file_bits(&dir.join("parts").join(f)), "{f} differs after resuming");
    }
    assert_eq!(metrics_lines(&dir.join("whole")), metrics_lines(&dir.join("parts")));
    // Another layer is another run.
    let other = OnlineSource::open(&OnlineOptions { layer: "up.0".into(), ..options(&data) }).unwrap();
    let err = train(&mut { other }, &model, &cfg(3), &dir.join("whole"), &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("other settings") && err.contains("up.0"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_datasets_and_layers_give_clear_errors() {
    let dir = tmp("errors");
    let data = folder(&dir);
    let open = |o: OnlineOptions| OnlineSource::open(&o).err().expect("an error").to_string();
    // An ImageFolder without a test split, and a flat one.
    let no_test = dir.join("no-test");
    std::fs::create_dir_all(&no_test).unwrap();
    std::fs::rename(data.join("train"), no_test.join("train")).unwrap();
    let err = open(options(&no_test));
    assert!(err.contains("no `test` split") && err.contains("test/<class>/<image>") && err.contains("[train]"), "{err}");
    let err = open(options(&no_test.join("train")));
    assert!(err.contains("no `train` split") && err.contains("[cat, dog]") && err.contains("flat"), "{err}");
    std::fs::rename(no_test.join("train"), data.join("train")).unwrap();
    // A manifest whose split column has no test rows.
    let csv = dir.join("manifest.csv");
    std::fs::write(&csv, "path,label,split\npets/train/cat/00.png,cat,train\npets/train/dog/00.png,dog,train\n").unwrap();
    let err = open(options(&csv));
    assert!(err.contains("--test-split test") && err.contains("no images in split `test`") && err.contains("train"), "{err}");
    // A manifest with both splits works, with class names from its labels.
    std::fs::write(&csv, "path,label,split\npets/train/cat/00.png,cat,train\npets/train/dog/00.png,dog,train\npets/test/dog/01.png,dog,test\n")
        .unwrap();
    let src = OnlineSource::open(&options(&csv)).unwrap();
    assert_eq!((src.labels(Split::Train), src.labels(Split::Test)), (&[0i64, 1][..], &[1i64][..]));
    // Splits with other classes.
    std::fs::create_dir_all(data.join("test/emu")).unwrap();
    picture(0, 1).save_with_format(data.join("test/emu/00.png"), image::ImageFormat::Png).unwrap();
    let err = open(options(&data));
    assert!(err.contains("different classes") && err.contains("[cat, dog, emu]"), "{err}");
    std::fs::remove_dir_all(data.join("test/emu")).unwrap();
    // A layer the model lacks (the error lists its taps), a timestep out of range, 16-bit models
    // on the CPU.
    let err = open(OnlineOptions { layer: "up.7".into(), ..options(&data) });
    assert!(err.contains("up.7") && err.contains("mid") && err.contains("up.0"), "{err}");
    let err = open(OnlineOptions { timestep: 1000, ..options(&data) });
    assert!(err.contains("1000") && err.contains("0..=999"), "{err}");
    let err = open(OnlineOptions { model_dtype: DType::BF16, ..options(&data) });
    assert!(err.contains("--model-dtype") && err.contains("CPU"), "{err}");
    // An image that cannot be read stops the run with its path.
    std::fs::write(data.join("train/dog/99.png"), b"\x89PNG broken").unwrap();
    let mut src = OnlineSource::open(&options(&data)).unwrap();
    let n = src.labels(Split::Train).len();
    let err = src.features(Split::Train, 0, &[n - 1], DType::F32, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("train/dog/99.png") || err.contains("dog/99.png"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn command_line_trains_online_and_reports_the_loop() {
    let dir = tmp("cli");
    let data = folder(&dir);
    let run = dir.join("run");
    let exe = env!("CARGO_BIN_EXE_revelio");
    let out = std::process::Command::new(exe)
        .args(["diffc", "train", "--online", "--model"])
        .arg(sd())
        .arg("--dataset")
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .args(["--layer", "up.1", "--timestep", "25", "--resolution", "16", "--epochs", "1", "--widths", "8,8", "--batch-size", "4"])
        .args(["--dropout", "0", "--test-noise", "fixed", "--workers", "2", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("img/s for the whole loop") && stdout.contains("U-Net"), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join(ONLINE_REPORT)).unwrap()).unwrap();
    assert_eq!((report["train_images"].as_u64(), report["test_images"].as_u64()), (Some(12), Some(6)));
    assert!(report["images_per_s"].as_f64().unwrap() > 0.0, "{report}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["source"]["test_noise"], "fixed");
    assert_eq!(config["source"]["model_dtype"], "f32");
    // --online without its model, and online options without --online.
    let out = std::process::Command::new(exe).args(["diffc", "train", "--online", "--out"]).arg(&run).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--model"));
    let out = std::process::Command::new(exe)
        .args(["diffc", "train", "--input", "x.safetensors", "--resolution", "16", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--online"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A DiT pipeline folder: the DiT fixture's transformer (16 channels, patch 2) and the extract
/// fixture's VAE.
fn dit_pipeline(dir: &Path) -> PathBuf {
    let model = dir.join("dit");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for (from, to) in [("tests/fixtures/dit/c1000/transformer", "transformer"), ("tests/fixtures/extract/sd/vae", "vae")] {
        std::fs::create_dir_all(model.join(to)).unwrap();
        for f in std::fs::read_dir(root.join(from)).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), model.join(to).join(f.file_name())).unwrap();
        }
    }
    model
}

#[test]
fn dit_features_come_as_maps_or_as_the_references_raw_view_of_tokens() {
    let dir = tmp("dit-layout");
    let data = folder(&dir);
    let model = dit_pipeline(&dir);
    let dit = |layout| OnlineOptions { model: model.clone(), layer: "block.1".into(), test_noise: TestNoise::Fixed, token_layout: layout, ..options(&data) };
    let mut map = OnlineSource::open(&dit(TokenLayout::Map)).unwrap();
    let mut view = OnlineSource::open(&dit(TokenLayout::View)).unwrap();
    let [d, h, w] = map.feature_shape();
    assert_eq!(view.feature_shape(), [d, h, w]);
    let items = [0, 1, 2];
    let m = map.features(Split::Test, 0, &items, DType::F32, &Device::Cpu).unwrap().to_f32_vec().unwrap();
    let v = view.features(Split::Test, 0, &items, DType::F32, &Device::Cpu).unwrap().to_f32_vec().unwrap();
    // view[b] is image b's token buffer [T, D] (token t = y*w + x holds map[b, :, y, x]) read as
    // [D, h, w]: its element i is channel i % D of token i / D.
    let per = d * h * w;
    for b in 0..items.len() {
        for i in 0..per {
            assert_eq!(v[b * per + i], m[b * per + (i % d) * h * w + i / d], "image {b}, element {i}");
        }
    }
    assert_ne!(m, v);
    assert_eq!(view.describe()["token_layout"], "view");
    assert!(map.describe().get("token_layout").is_none());

    // A DiT store: `diffc train --token-layout view` reads it as the online source does, the run
    // records it, and `diffc eval` reads the store the same way.
    let store = dir.join("store");
    let eo = extract_options(&model, &data.join("test"), &store, "block.1");
    extract(&eo, false).unwrap();
    let mut stored = StoreSource::open(&store, "block.1", T, "", "", TokenLayout::View).unwrap();
    let s = stored.features(Split::Test, 0, &items, DType::F32, &Device::Cpu).unwrap().to_f32_vec().unwrap();
    common::assert_close("DiT store read as the raw view vs online", &s, &v, 1e-5);
    let exe = env!("CARGO_BIN_EXE_revelio");
    let train_cmd = |layout: &str, out: &Path| {
        std::process::Command::new(exe)
            .args(["diffc", "train", "--features"])
            .arg(&store)
            .args(["--layer", "block.1", "--timestep", "25", "--train-split", "", "--test-split", "", "--epochs", "1"])
            .args(["--widths", "8,8", "--batch-size", "4", "--dropout", "0", "--device", "cpu", "--token-layout", layout, "--out"])
            .arg(out)
            .output()
            .unwrap()
    };
    let run = dir.join("run-view");
    let out = train_cmd("view", &run);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["source"]["token_layout"], "view");
    let out = train_cmd("map", &run);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("token_layout"), "{err}");
    let out = std::process::Command::new(exe).args(["diffc", "eval", "--classifier"]).arg(&run).arg("--features").arg(&store).args(["--split", "", "--device", "cpu"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The raw view is DiT's: a U-Net's features refuse it.
    let err = OnlineSource::open(&OnlineOptions { token_layout: TokenLayout::View, ..options(&data) }).err().unwrap().to_string();
    assert!(err.contains("--token-layout view") && err.contains("sd"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_online_sweep_trains_each_run_as_train_online_does() {
    let dir = tmp("sweep");
    let data = folder(&dir);
    let exe = env!("CARGO_BIN_EXE_revelio");
    let common_args = ["--resolution", "16", "--epochs", "1", "--widths", "8,8", "--batch-size", "4", "--dropout", "0", "--test-noise", "fixed", "--workers", "2", "--device", "cpu"];
    let sweep = dir.join("sweep");
    let out = std::process::Command::new(exe)
        .args(["diffc", "sweep", "--online", "--model"])
        .arg(sd())
        .arg("--dataset")
        .arg(&data)
        .args(["--layers", "up.1,mid", "--timesteps", "25"])
        .args(common_args)
        .arg("--out")
        .arg(&sweep)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = std::fs::read_to_string(sweep.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(sweep.join("sweep.png").is_file() && sweep.join("index.html").is_file());
    let run = dir.join("run");
    let out = std::process::Command::new(exe)
        .args(["diffc", "train", "--online", "--model"])
        .arg(sd())
        .arg("--dataset")
        .arg(&data)
        .args(["--layer", "up.1", "--timestep", "25"])
        .args(common_args)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (a, b) = (common::file_bits(&sweep.join("up.1_t25").join(WEIGHTS)), common::file_bits(&run.join(WEIGHTS)));
    assert!(a == b, "the sweep's up.1 run differs from `diffc train --online`");
    // A layer the model does not have is refused before any run trains.
    let bad = dir.join("bad");
    let out = std::process::Command::new(exe)
        .args(["diffc", "sweep", "--online", "--model"])
        .arg(sd())
        .arg("--dataset")
        .arg(&data)
        .args(["--layers", "up.1,up.9", "--timesteps", "25"])
        .args(common_args)
        .arg("--out")
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("up.9") && !bad.join("up.1_t25").exists(), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
