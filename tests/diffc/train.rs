//! Training, evaluation and sweeps on small synthetic labelled feature sets: accuracy, exact
//! resume, clear errors for bad inputs, the figures, and the `revelio diffc` command line.

use crate::common::*;
use revelio::analysis::plot::{Figure, HeatMap, LinePlot, Series};
use revelio::diffc::data::{class_count, FileSource, Split, StoreSource, TokenLayout};
use revelio::diffc::eval::{confusion_heat_map, evaluate, write_report};
use revelio::diffc::model::DiffcClassifier;
use revelio::diffc::sweep::sweep_store;
use revelio::diffc::train::{read_metrics, train, ModelOptions, TrainConfig, TrainSummary, CHECKPOINT, METRICS, WEIGHTS};
use revelio::features::store::{FeatureStoreWriter, ImageEntry, Manifest, STORE_FORMAT};
use revelio::io::save_safetensors;
use revelio::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("revelio-diffc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `n` feature maps [C, h, w] of classes `i % k`: class k's fixed random pattern plus noise.
fn synthetic(n: usize, k: usize, [c, h, w]: [usize; 3], noise: f32, seed: u64) -> (Tensor, Vec<i64>) {
    let per = c * h * w;
    let patterns: Vec<Vec<f32>> = (0..k).map(|j| randn(&[per], 1000 + j as u64).to_f32_vec().unwrap()).collect();
    let eps = randn(&[n * per], seed).to_f32_vec().unwrap();
    let labels: Vec<i64> = (0..n).map(|i| (i % k) as i64).collect();
    let v: Vec<f32> = (0..n * per).map(|i| 2.0 + patterns[labels[i / per] as usize][i % per] + noise * eps[i]).collect();
    (Tensor::from_vec(v, [n, c, h, w], &Device::Cpu).unwrap(), labels)
}

/// A features file for `--input`: 64 train and 32 test images of 4 classes, 8 x 6 x 6 maps.
fn synthetic_file(dir: &Path, names: Option<&[&str]>) -> PathBuf {
    let (xtr, ltr) = synthetic(64, 4, [8, 6, 6], 1.0, 1);
    let (xte, lte) = synthetic(32, 4, [8, 6, 6], 1.0, 2);
    let ltr = Tensor::from_vec(ltr, [64], &Device::Cpu).unwrap();
    let lte = Tensor::from_vec(lte, [32], &Device::Cpu).unwrap();
    let path = dir.join("features.safetensors");
    let meta = names.map(|n| HashMap::from([("class_names".to_string(), serde_json::to_string(n).unwrap())]));
    save_safetensors(&path, &[("train_features", &xtr), ("train_labels", &ltr), ("test_features", &xte), ("test_labels", &lte)], meta)
        .unwrap();
    path
}

fn dedup<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

/// A feature store with (layer, timestep) maps of `shape` per image: 48 train then 24 test
/// images of 3 classes (or all train when `test` is false).
fn synthetic_store(dir: &Path, keys: &[(&str, usize)], shape: &[usize], test: bool) -> PathBuf {
    let n = 72;
    let images = (0..n)
        .map(|i| ImageEntry {
            path: format!("img{i}.png"),
            label: (i % 3) as i64,
            split: if i < 48 || !test { "train".into() } else { "test".into() },
            caption: None,
            prompt: None,
        })
        .collect();
    let m = Manifest {
        format: STORE_FORMAT.into(),
        model: "synthetic".into(),
        model_config_hash: "0".into(),
        layers: dedup(keys.iter().map(|k| k.0.to_string()).collect()),
        timesteps: dedup(keys.iter().map(|k| k.1).collect()),
        pooling: if shape.len() == 3 { "none".into() } else { "mean".into() },
        dtype: "f32".into(),
        seed: 0,
        settings: Default::default(),
        images,
        class_names: vec!["cat".into(), "dog".into(), "owl".into()],
        feature_shapes: Default::default(),
        shards: vec![],
        failures: vec![],
    };
    let mut wr = FeatureStoreWriter::create_or_resume(dir, m).unwrap();
    let per: usize = shape.iter().product();
    let feats: Vec<((String, usize), Tensor)> = keys
        .iter()
        .enumerate()
        .map(|(j, &(l, t))| {
            let (x, _) = synthetic(n, 3, [per, 1, 1], 0.8, 50 + j as u64);
            let mut dims = vec![n];
            dims.extend_from_slice(shape);
            ((l.to_string(), t), x.reshape(dims).unwrap())
        })
        .collect();
    wr.write_shard(0, n, &feats, &[]).unwrap();
    dir.to_path_buf()
}

fn small(epochs: usize) -> (ModelOptions, TrainConfig) {
    (
        ModelOptions { widths: vec![16, 16, 16], dropout: 0.1, num_classes: None },
        TrainConfig {
            epochs,
            cosine_epochs: epochs,
            lr: 1e-3,
            weight_decay: 0.01,
            batch_size: 16,
            test_batch_size: 32,
            seed: 3,
            dtype: "f32".into(),
        },
    )
}

#[test]
fn training_reaches_high_accuracy_and_evaluates() {
    let dir = tmp("accuracy");
    let file = synthetic_file(&dir, Some(&["a", "b", "c", "d"]));
    let mut src = FileSource::open(&file).unwrap();
    let (opts, cfg) = small(12);
    let cfg = TrainConfig { lr: 3e-3, ..cfg };
    let s = train(&mut src, &opts, &cfg, &dir.join("run"), &Device::Cpu).unwrap();
    assert_eq!((s.epochs, s.last_epoch, s.num_classes, s.train_images, s.test_images), (12, 12, 4, 64, 32));
    assert!(s.last_test_accuracy >= 0.9 && s.best_test_accuracy >= s.last_test_accuracy, "{s:?}");
    let metrics = read_metrics(&dir.join("run").join(METRICS)).unwrap();
    assert_eq!(metrics.len(), 12);
    assert!(metrics[11].train_loss < metrics[0].train_loss, "{metrics:?}");
    assert_eq!(metrics[0].lr, 3e-3);

    let model = DiffcClassifier::load(&dir.join("run").join(WEIGHTS), 0.0, &Device::Cpu).unwrap();
    assert_eq!(model.num_batches_tracked, 12 * 4);
    let r = evaluate(&model, &mut src, Split::Test, 7, DType::F32, &Device::Cpu).unwrap();
    assert!((r.top1 - s.last_test_accuracy).abs() < 1e-12, "eval {} vs training's last epoch {}", r.top1, s.last_test_accuracy);
    assert_eq!(r.images, 32);
    assert_eq!(r.confusion.iter().flatten().sum::<u64>(), 32);
    assert_eq!(r.per_class.iter().map(|c| c.total).collect::<Vec<_>>(), vec![8; 4]);
    assert_eq!(r.per_class[1].name, "b");
    let diag: u64 = (0..4).map(|i| r.confusion[i][i]).sum();
    assert!((diag as f64 / 32.0 - r.top1).abs() < 1e-12);
    write_report(&r, &dir).unwrap();
    let png = image::open(dir.join("confusion.png")).unwrap();
    assert_eq!((png.width(), png.height()), confusion_heat_map(&r).size());
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("confusion.json")).unwrap()).unwrap();
    assert_eq!(json["counts"][2][2].as_u64(), Some(r.confusion[2][2]));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_equals_an_uninterrupted_run() {
    let dir = tmp("resume");
    let file = synthetic_file(&dir, None);
    let (mut opts, _) = small(3);
    opts.dropout = 0.3;
    let cfg = |epochs| TrainConfig { epochs, cosine_epochs: 3, ..small(3).1 };
    let whole = train(&mut FileSource::open(&file).unwrap(), &opts, &cfg(3), &dir.join("whole"), &Device::Cpu).unwrap();
    let first = train(&mut FileSource::open(&file).unwrap(), &opts, &cfg(1), &dir.join("parts"), &Device::Cpu).unwrap();
    assert_eq!(first.epochs, 1);
    let resumed = train(&mut FileSource::open(&file).unwrap(), &opts, &cfg(3), &dir.join("parts"), &Device::Cpu).unwrap();
    assert_eq!(resumed, whole);
    for f in [WEIGHTS, CHECKPOINT] {
        assert!(file_bits(&dir.join("whole").join(f)) == file_bits(&dir.join("parts").join(f)), "{f} differs after resuming");
    }
    // metrics.jsonl: the same lines but for the timings.
    let strip = |p: &Path| {
        let text = std::fs::read_to_string(p.join(METRICS)).unwrap();
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let o = v.as_object_mut().unwrap();
                o.remove("seconds");
                o.remove("train_images_per_s");
                v.to_string()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&dir.join("whole")), strip(&dir.join("parts")));
    assert_eq!(read_metrics(&dir.join("whole").join(METRICS)).unwrap().len(), 3);
    // A finished run is not trained again (its summary comes from metrics.jsonl, whose floats
    // JSON gives back to within an ulp); other settings are refused.
    let again = train(&mut FileSource::open(&file).unwrap(), &opts, &cfg(3), &dir.join("whole"), &Device::Cpu).unwrap();
    assert_eq!(TrainSummary { last_train_loss: whole.last_train_loss, ..again.clone() }, whole);
    assert!((again.last_train_loss - whole.last_train_loss).abs() <= 1e-15 * whole.last_train_loss.abs());
    let other = TrainConfig { lr: 5e-4, ..cfg(3) };
    let err = train(&mut FileSource::open(&file).unwrap(), &opts, &other, &dir.join("whole"), &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("other settings") && err.contains("lr"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_inputs_give_clear_errors() {
    let dir = tmp("errors");
    let store = synthetic_store(&dir.join("store"), &[("mid", 25)], &[4, 3, 3], true);
    // A store without the layer, or the timestep.
    let err = StoreSource::open(&store, "up.1", 25, "train", "test", TokenLayout::Map).err().unwrap().to_string();
    assert!(err.contains("up.1") && err.contains("mid"), "{err}");
    let err = StoreSource::open(&store, "mid", 500, "train", "test", TokenLayout::Map).err().unwrap().to_string();
    assert!(err.contains("500") && err.contains("[25]"), "{err}");
    // An empty split.
    let err = StoreSource::open(&store, "mid", 25, "train", "validation", TokenLayout::Map).err().unwrap().to_string();
    assert!(err.contains("split `validation` has no stored images") && err.contains("test, train"), "{err}");
    let only_train = synthetic_store(&dir.join("only-train"), &[("mid", 25)], &[4, 3, 3], false);
    let err = StoreSource::open(&only_train, "mid", 25, "train", "test", TokenLayout::Map).err().unwrap().to_string();
    assert!(err.contains("split `test` has no stored images"), "{err}");
    // Pooled vectors are not maps.
    let pooled = synthetic_store(&dir.join("pooled"), &[("mid", 25)], &[4], true);
    let err = StoreSource::open(&pooled, "mid", 25, "train", "test", TokenLayout::Map).err().unwrap().to_string();
    assert!(err.contains("--pooling none"), "{err}");
    // Class counts: the store names 3 classes.
    let src = StoreSource::open(&store, "mid", 25, "train", "test", TokenLayout::Map).unwrap();
    assert_eq!(class_count(&src, None).unwrap(), 3);
    let err = class_count(&src, Some(5)).unwrap_err().to_string();
    assert!(err.contains("class count mismatch") && err.contains('5') && err.contains('3'), "{err}");
    let file = synthetic_file(&dir, None);
    let fsrc = FileSource::open(&file).unwrap();
    assert_eq!(class_count(&fsrc, None).unwrap(), 4);
    let err = class_count(&fsrc, Some(3)).unwrap_err().to_string();
    assert!(err.contains("class count mismatch") && err.contains("label 3"), "{err}");
    // A folder that is not a run's.
    let err = revelio::diffc::train::read_run_config(&dir.join("store")).unwrap_err().to_string();
    assert!(err.contains("not a Diff-C run folder") && err.contains("diffc train"), "{err}");
    let model = DiffcClassifier::new(
        revelio::diffc::DiffcConfig { in_channels: 8, num_classes: 3, widths: vec![4], dropout: 0.0 },
        1,
        &Device::Cpu,
    )
    .unwrap();
    let err = evaluate(&model, &mut FileSource::open(&file).unwrap(), Split::Test, 8, DType::F32, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("class count mismatch"), "{err}");
    // An empty split in a features file; a label count that does not fit.
    let x = Tensor::zeros([0, 8, 6, 6], DType::F32, &Device::Cpu).unwrap();
    let l = Tensor::zeros([0], DType::I64, &Device::Cpu).unwrap();
    let (xtr, _) = synthetic(4, 2, [8, 6, 6], 1.0, 1);
    let ltr = Tensor::from_vec(vec![0i64, 1, 0], [3], &Device::Cpu).unwrap();
    let empty = dir.join("empty.safetensors");
    save_safetensors(&empty, &[("train_features", &xtr), ("train_labels", &ltr), ("test_features", &x), ("test_labels", &l)], None)
        .unwrap();
    let err = FileSource::open(&empty).err().unwrap().to_string();
    assert!(err.contains("train_labels") && err.contains("[4]"), "{err}");
    let ltr = Tensor::from_vec(vec![0i64, 1, 0, 1], [4], &Device::Cpu).unwrap();
    save_safetensors(&empty, &[("train_features", &xtr), ("train_labels", &ltr), ("test_features", &x), ("test_labels", &l)], None)
        .unwrap();
    let err = FileSource::open(&empty).err().unwrap().to_string();
    assert!(err.contains("split `test` is empty"), "{err}");
    // 16-bit compute on the CPU.
    let (opts, cfg) = small(1);
    let cfg = TrainConfig { dtype: "bf16".into(), ..cfg };
    let err = train(&mut FileSource::open(&file).unwrap(), &opts, &cfg, &dir.join("bf16"), &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("CPU") && err.contains("f32"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn store_training_and_sweep_write_table_and_plot() {
    let dir = tmp("sweep");
    let keys = [("mid", 0), ("mid", 25), ("up.1", 0), ("up.1", 25)];
    let store = synthetic_store(&dir.join("store"), &keys, &[4, 4, 4], true);
    let (opts, cfg) = small(2);
    let opts = ModelOptions { widths: vec![8, 8], ..opts };
    let layers = vec!["mid".to_string(), "up.1".to_string()];
    let rows = sweep_store(&store, &layers, &[0, 25], ("train", "test"), TokenLayout::Map, &opts, &cfg, &dir.join("out"), &Device::Cpu).unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!((rows[2].layer.as_str(), rows[2].timestep, rows[2].run.as_str()), ("up.1", 0, "up.1_t0"));
    let csv = std::fs::read_to_string(dir.join("out/sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.starts_with("layer,timestep,last_epoch,last_test_accuracy,best_epoch,best_test_accuracy"));
    let json: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(dir.join("out/sweep.json")).unwrap()).unwrap();
    assert_eq!(json.len(), 4);
    let png = image::open(dir.join("out/sweep.png")).unwrap();
    assert_eq!((png.width(), png.height()), (900, 560));
    // The page: the plot inline, a linked table row per run, the stylesheet beside it.
    let page = std::fs::read_to_string(dir.join("out/index.html")).unwrap();
    assert!(page.contains("<svg") && page.contains("href=\"sweep.png\""));
    for r in &rows {
        assert!(page.contains(&format!("<a href=\"{}/\">{}</a>", r.run, r.layer)), "{page}");
    }
    assert!(dir.join("out/assets/style.css").is_file());
    // Rerunning skips the finished runs and gives the same table.
    let again = sweep_store(&store, &layers, &[0, 25], ("train", "test"), TokenLayout::Map, &opts, &cfg, &dir.join("out"), &Device::Cpu).unwrap();
    assert_eq!(again, rows);
    // A missing (layer, timestep) is found before any training.
    let err = sweep_store(&store, &["up.2".to_string()], &[0], ("train", "test"), TokenLayout::Map, &opts, &cfg, &dir.join("out2"), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("up.2"), "{err}");
    assert!(!dir.join("out2").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn figures_are_pngs_of_the_expected_size() {
    let dir = tmp("figures");
    let plot = LinePlot {
        title: "accuracy".into(),
        x_label: "timestep".into(),
        y_label: "top-1 (%)".into(),
        series: vec![
            Series { name: "mid".into(), points: vec![(0.0, 40.0), (25.0, 55.0), (500.0, 20.0)] },
            Series { name: "up.1".into(), points: vec![(0.0, 60.0), (25.0, 70.0), (500.0, 30.0)] },
        ],
        categorical_x: true,
        y_range: Some((0.0, 100.0)),
        width: 640,
        height: 400,
    };
    plot.save(&dir.join("plot.png")).unwrap();
    let img = image::open(dir.join("plot.png")).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (640, 400));
    // Both series' colours are drawn.
    for c in &revelio::analysis::plot::PALETTE[..2] {
        assert!(img.pixels().any(|p| p == c), "colour {c:?} missing");
    }
    let linear = LinePlot { categorical_x: false, y_range: None, ..plot.clone() };
    assert_eq!(linear.render().unwrap().dimensions(), (640, 400));
    assert!(LinePlot { width: 50, ..plot.clone() }.render().is_err());
    assert!(LinePlot { series: vec![], ..plot }.render().is_err());

    // Heat map: 2 x 2 cells of 20 px from its origin, coloured on the scale; the SVG is the
    // same figure.
    let hm = HeatMap {
        title: "T".into(),
        x_label: "predicted".into(),
        y_label: "true".into(),
        values: vec![vec![1.0, 0.0], vec![0.25, f64::NAN]],
        row_labels: vec!["a".into(), "b".into()],
        col_labels: vec!["a".into(), "b".into()],
        cell_text: vec![],
        cell: 20,
    };
    hm.save(&dir.join("heat.png")).unwrap();
    let img = image::open(dir.join("heat.png")).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), hm.size());
    let (x0, y0) = hm.origin();
    assert_eq!(img.get_pixel(x0 + 10, y0 + 10), &revelio::analysis::plot::heat_color(1.0));
    assert_eq!(img.get_pixel(x0 + 30, y0 + 10), &revelio::analysis::plot::heat_color(0.0));
    let svg = hm.svg().unwrap();
    assert!(svg.contains("\npredicted\n</text>"), "{svg}");
    assert!(HeatMap { row_labels: vec!["a".into()], ..hm }.render().is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn command_line_trains_and_evaluates() {
    let dir = tmp("cli");
    let file = synthetic_file(&dir, None);
    let exe = env!("CARGO_BIN_EXE_revelio");
    let run = dir.join("run");
    let out = std::process::Command::new(exe)
        .args(["diffc", "train", "--input"])
        .arg(&file)
        .arg("--out")
        .arg(&run)
        .args(["--epochs", "2", "--widths", "8,8", "--dropout", "0", "--lr", "1e-3", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("best"));
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["cosine_epochs"], 2);
    assert_eq!(config["train"]["test_batch_size"], 32);
    let out = std::process::Command::new(exe)
        .args(["diffc", "eval", "--classifier"])
        .arg(&run)
        .arg("--input")
        .arg(&file)
        .args(["--device", "cpu"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["eval.json", "confusion.json", "confusion.png", "classifier_best.safetensors", "summary.json"] {
        assert!(run.join(f).exists(), "{f} missing");
    }
    let out =
        std::process::Command::new(exe).args(["diffc", "train", "--features"]).arg(&dir).arg("--out").arg(dir.join("x")).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--layer"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}
