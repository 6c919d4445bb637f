//! Datasets: ImageFolder numbered as torchvision numbers it, CSV/JSONL manifests, Hugging Face
//! parquet files written by the real `datasets` library (tools/reference/
//! make_dataset_fixtures.py), the prefetch pipeline, and bad input named clearly.

use revelio::features::dataset::{Dataset, DatasetFormat, DatasetOptions};
use revelio::features::hf_parquet::Columns;
use revelio::features::image::{Preprocess, RgbImage};
use revelio::features::prefetch::{load_batch, Prefetcher};
use revelio::features::prompts::{read_prompts, PromptFormat};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("revelio-dataset-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A w x h PNG whose pixel (x, y) is (seed + x, seed + y, seed).
fn write_png(path: &Path, w: u32, h: u32, seed: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([seed.wrapping_add(x as u8), seed.wrapping_add(y as u8), seed]));
    img.save_with_format(path, image::ImageFormat::Png).unwrap();
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The layout torchvision 0.29's `make_dataset` was run on (classes, nested folders sorted by
/// path string, case-insensitive extensions, a hidden class, a non-image file), plus files that
/// are listed but cannot be decoded.
fn image_folder(root: &Path) {
    write_png(&root.join("a_cat/z.png"), 7, 5, 10);
    write(&root.join("a_cat/B.JPG"), b"not really a jpeg");
    write_png(&root.join("a_cat/sub/x.webp"), 6, 6, 20); // a PNG named .webp: decoded by content
    write(&root.join("a_cat/sub-x/y.bmp"), b"BM unsupported");
    write_png(&root.join("a_cat/sub/deeper/w.png"), 5, 8, 30);
    write_png(&root.join("b_dog/1.png"), 9, 4, 40);
    write_png(&root.join("b_dog/10.png"), 4, 9, 50);
    write_png(&root.join("b_dog/2.jpeg"), 6, 7, 60); // a PNG named .jpeg
    write(&root.join("b_dog/notes.txt"), b"not listed");
    write_png(&root.join(".hidden/h.png"), 5, 5, 70);
    write_png(&root.join("Zebra/zz.PNG"), 5, 6, 80);
}

#[test]
fn image_folder_numbers_as_torchvision() {
    let root = tmp("folder");
    image_folder(&root);
    let ds = Dataset::open(&root, &DatasetOptions::default()).unwrap();
    assert_eq!(ds.format(), DatasetFormat::ImageFolder);
    assert_eq!(ds.class_names(), [".hidden", "Zebra", "a_cat", "b_dog"]);
    // torchvision.datasets.folder.make_dataset on the same tree.
    let want = [
        (0, ".hidden/h.png"),
        (1, "Zebra/zz.PNG"),
        (2, "a_cat/B.JPG"),
        (2, "a_cat/z.png"),
        (2, "a_cat/sub/x.webp"),
        (2, "a_cat/sub-x/y.bmp"),
        (2, "a_cat/sub/deeper/w.png"),
        (3, "b_dog/1.png"),
        (3, "b_dog/10.png"),
        (3, "b_dog/2.jpeg"),
    ];
    let got: Vec<(i64, &str)> = ds.entries().iter().map(|e| (e.label, e.path.as_str())).collect();
    assert_eq!(got, want.map(|(l, p)| (l as i64, p)));
    assert!(ds.load_image(3).is_ok());
    let err = ds.load_image(2).unwrap_err().to_string();
    assert!(err.contains("a_cat/B.JPG"), "{err}");
}

#[test]
fn image_folder_errors_name_the_problem() {
    let root = tmp("folder-bad");
    let err = Dataset::open(&root, &DatasetOptions::default()).err().unwrap().to_string();
    assert!(err.contains("no class folders"), "{err}");
    write(&root.join("cls/readme.txt"), b"x");
    let err = Dataset::open(&root, &DatasetOptions::default()).err().unwrap().to_string();
    assert!(err.contains("no images"), "{err}");
    write_png(&root.join("other/a.png"), 3, 3, 0);
    let err = Dataset::open(&root, &DatasetOptions::default()).err().unwrap().to_string();
    assert!(err.contains("cls") && err.contains("no images in class folder"), "{err}");
    let err = Dataset::open(root.join("missing"), &DatasetOptions::default()).err().unwrap().to_string();
    assert!(err.contains("no such file or folder"), "{err}");
}

#[test]
fn csv_and_jsonl_manifests() {
    let root = tmp("manifest");
    write_png(&root.join("imgs/a.png"), 4, 4, 1);
    write_png(&root.join("imgs/b b.png"), 4, 4, 2);
    write(
        &root.join("list.csv"),
        b"path,label,caption,split\nimgs/a.png,dog,\"a dog, running\",train\n\"imgs/b b.png\",cat,,test\nimgs/c.png,dog,,train\n",
    );
    let ds = Dataset::open(root.join("list.csv"), &DatasetOptions::default()).unwrap();
    assert_eq!(ds.format(), DatasetFormat::Csv);
    assert_eq!(ds.class_names(), ["cat", "dog"]);
    let labels: Vec<i64> = ds.entries().iter().map(|e| e.label).collect();
    assert_eq!(labels, [1, 0, 1]);
    assert_eq!(ds.entries()[0].caption.as_deref(), Some("a dog, running"));
    assert_eq!(ds.entries()[1].caption, None);
    assert!(ds.load_image(1).is_ok());
    assert!(ds.load_image(2).unwrap_err().to_string().contains("c.png"));
    // A store records the manifest file (not its folder), so the dataset opens again as it was.
    let mut settings = serde_json::Map::new();
    revelio::features::dataset::record(&ds, &DatasetOptions::default(), &mut settings);
    let recorded = settings["dataset"].as_str().unwrap();
    assert!(recorded.ends_with("list.csv"), "{recorded}");
    let again = Dataset::open(recorded, &DatasetOptions { format: Some(DatasetFormat::parse(settings["dataset_format"].as_str().unwrap()).unwrap()), ..Default::default() }).unwrap();
    assert_eq!(again.entries(), ds.entries());
    let test = Dataset::open(root.join("list.csv"), &DatasetOptions { split: Some("test".into()), ..Default::default() }).unwrap();
    assert_eq!(test.len(), 1);
    assert_eq!(test.entries()[0].path, "imgs/b b.png");
    assert!(test.load_image(0).is_ok());
    let err = Dataset::open(root.join("list.csv"), &DatasetOptions { split: Some("val".into()), ..Default::default() })
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("split `val`") && err.contains("test, train"), "{err}");

    write(&root.join("list.jsonl"), b"{\"path\": \"imgs/a.png\", \"label\": 7}\n\n{\"path\": \"imgs/b b.png\", \"label\": 3, \"caption\": \"x\"}\n");
    let ds = Dataset::open(root.join("list.jsonl"), &DatasetOptions::default()).unwrap();
    assert!(ds.class_names().is_empty());
    assert_eq!(ds.entries().iter().map(|e| e.label).collect::<Vec<_>>(), [7, 3]);

    write(&root.join("nolabel.csv"), b"path,class\nimgs/a.png,1\n");
    let err = Dataset::open(root.join("nolabel.csv"), &DatasetOptions::default()).err().unwrap().to_string();
    assert!(err.contains("no `label`") && err.contains("class, path"), "{err}");
    write(&root.join("empty.csv"), b"path,label\n");
    let err = Dataset::open(root.join("empty.csv"), &DatasetOptions::default()).err().unwrap().to_string();
    assert!(err.contains("no images"), "{err}");
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/datasets")
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json"))
        .expect("tests/fixtures/datasets: run tools/reference/make_dataset_fixtures.py");
    serde_json::from_str(&text).unwrap()
}

/// `revelio generate --prompts` on the same parquet files: the caption column (found by its
/// name, `text`), rows without a caption skipped and counted, each prompt remembering its row;
/// a single file, and a column that is not there (the columns listed).
#[test]
fn prompts_come_from_the_caption_column_of_hf_parquet() {
    let want = expected();
    let rows: Vec<&serde_json::Value> =
        want["test"].as_array().unwrap().iter().chain(want["train"].as_array().unwrap()).collect();
    let captions: Vec<(usize, &str)> = rows.iter().enumerate().filter_map(|(i, r)| r["caption"].as_str().map(|c| (i, c))).collect();
    let got = read_prompts(&fixtures().join("hf"), None, None).unwrap();
    assert_eq!(got.prompts.iter().map(|p| (p.source_row, p.text.as_str())).collect::<Vec<_>>(), captions);
    assert_eq!(got.skipped.len(), rows.len() - captions.len());
    assert!(got.prompts.iter().all(|p| p.negative.is_none()));

    let one = fixtures().join("hf/data/test-00000-of-00001.parquet");
    let got = read_prompts(&one, Some(PromptFormat::Parquet), Some("text")).unwrap();
    let test_captions: Vec<&str> = want["test"].as_array().unwrap().iter().filter_map(|r| r["caption"].as_str()).collect();
    assert_eq!(got.prompts.iter().map(|p| p.text.as_str()).collect::<Vec<_>>(), test_captions);
    let e = read_prompts(&one, None, Some("top_caption")).err().unwrap().to_string();
    assert!(e.contains("top_caption") && e.contains("text"), "{e}");
}

#[test]
fn hf_parquet_labels_names_splits_and_images() {
    let want = expected();
    let opts = DatasetOptions { columns: Columns { caption: Some("text".into()), ..Default::default() }, ..Default::default() };
    let ds = Dataset::open(fixtures().join("hf"), &opts).unwrap();
    assert_eq!(ds.format(), DatasetFormat::Parquet);
    assert_eq!(ds.class_names(), ["zebra", "cat", "dog"]);
    // Files in sorted order: test-00000, train-00000, train-00001.
    let rows: Vec<&serde_json::Value> =
        want["test"].as_array().unwrap().iter().chain(want["train"].as_array().unwrap()).collect();
    assert_eq!(ds.len(), rows.len());
    for (i, (e, w)) in ds.entries().iter().zip(&rows).enumerate() {
        assert_eq!(e.label, w["label"].as_i64().unwrap(), "row {i}");
        assert_eq!(e.caption.as_deref(), w["caption"].as_str(), "row {i}");
        assert_eq!(e.split, if i < 4 { "test" } else { "train" });
        match w["pixel"].as_array() {
            None => {
                let err = ds.load_image(i).unwrap_err().to_string();
                assert!(err.contains(&e.path) && err.contains("train-00001-of-00002.parquet#1"), "{err}");
            }
            Some(px) => {
                let img = ds.load_image(i).unwrap();
                let tol = if w["format"] == "jpeg" { 4 } else { 0 };
                for (c, (&got, want)) in img.pixels().iter().zip(px).enumerate() {
                    let d = (got as i64 - want.as_i64().unwrap()).abs();
                    assert!(d <= tol, "row {i} channel {c}: {got} vs {want}");
                }
            }
        }
    }
    assert_eq!(ds.entries()[4].path, "data/train-00000-of-00002.parquet#0");
    let train = Dataset::open(fixtures().join("hf"), &DatasetOptions { split: Some("train".into()), ..Default::default() }).unwrap();
    assert_eq!(train.len(), 8);
    assert_eq!(train.entries()[0].label, want["train"][0]["label"].as_i64().unwrap());
    assert!(train.load_image(0).is_ok());
}

#[test]
fn hf_parquet_label_column_errors_and_choice() {
    let file = fixtures().join("cifar/train.parquet");
    let err = Dataset::open(&file, &DatasetOptions::default()).err().unwrap().to_string();
    assert!(err.contains("no label column `label`") && err.contains("fine_label") && err.contains("--label-column"), "{err}");
    let opts = DatasetOptions { columns: Columns { label: Some("fine_label".into()), ..Default::default() }, ..Default::default() };
    let ds = Dataset::open(&file, &opts).unwrap();
    assert_eq!(ds.entries().iter().map(|e| e.label).collect::<Vec<_>>(), [4, 1, 0]);
    assert_eq!(ds.class_names(), ["f0", "f1", "f2", "f3", "f4"]);
    assert!(ds.load_image(2).is_ok());
    let opts = DatasetOptions { columns: Columns { caption: Some("nope".into()), label: Some("fine_label".into()), ..Default::default() }, ..Default::default() };
    let err = Dataset::open(&file, &opts).err().unwrap().to_string();
    assert!(err.contains("no caption column `nope`"), "{err}");
    // FGVC-Aircraft's layout: no `label`, so labels come from `variant` (not `family`), as the
    // reference's loader takes them; a named column still wins.
    let file = fixtures().join("aircraft/train.parquet");
    let want = &expected()["aircraft_variant"];
    let ds = Dataset::open(&file, &DatasetOptions::default()).unwrap();
    let labels: Vec<i64> = want["labels"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(ds.entries().iter().map(|e| e.label).collect::<Vec<_>>(), labels);
    let names: Vec<&str> = want["names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(ds.class_names(), names);
    let opts = DatasetOptions { columns: Columns { label: Some("family".into()), ..Default::default() }, ..Default::default() };
    assert_eq!(Dataset::open(&file, &opts).unwrap().entries().iter().map(|e| e.label).collect::<Vec<_>>(), [1, 0, 1]);
}

#[test]
fn prefetch_yields_batches_in_order_with_failures() {
    let root = tmp("prefetch");
    image_folder(&root);
    let ds = Arc::new(Dataset::open(&root, &DatasetOptions::default()).unwrap());
    let pre = Preprocess::Eval { resolution: 4 };
    let reference: Vec<Vec<f32>> = (0..ds.len())
        .map(|i| match ds.load_image(i) {
            Ok(img) => pre.apply(&img, i).unwrap(),
            Err(_) => vec![0.0; 48],
        })
        .collect();
    for (batch, depth, threads) in [(1, 1, Some(1)), (3, 2, Some(2)), (4, 4, None)] {
        let pf = Prefetcher::sequential(ds.clone(), 1..ds.len(), batch, pre, depth, threads).unwrap();
        let mut next = 1;
        let mut failed = Vec::new();
        for b in pf {
            let b = b.unwrap();
            assert_eq!(b.indices, (next..(next + batch).min(ds.len())).collect::<Vec<_>>());
            assert_eq!(b.images.dims(), [b.indices.len(), 3, 4, 4]);
            let v = b.images.to_f32_vec().unwrap();
            for (k, &i) in b.indices.iter().enumerate() {
                assert_eq!(&v[k * 48..(k + 1) * 48], &reference[i][..], "image {i} (batch {batch})");
            }
            failed.extend(b.failures.iter().map(|f| (f.index, f.path.clone())));
            next += b.indices.len();
        }
        assert_eq!(next, ds.len());
        assert_eq!(failed, [(2, "a_cat/B.JPG".to_string()), (5, "a_cat/sub-x/y.bmp".to_string())]);
    }
    // Dropping a prefetcher part-way stops its producer.
    let mut pf = Prefetcher::sequential(ds.clone(), 0..ds.len(), 1, pre, 1, Some(1)).unwrap();
    assert!(pf.next().is_some());
    drop(pf);
    // Parquet rows through the pipeline.
    let hf = Arc::new(Dataset::open(fixtures().join("hf"), &DatasetOptions::default()).unwrap());
    let direct = load_batch(&hf, &(0..hf.len()).collect::<Vec<_>>(), &pre).unwrap();
    assert_eq!(direct.failures.len(), 1);
    assert_eq!(direct.failures[0].index, 9);
    let via: Vec<f32> = Prefetcher::sequential(hf.clone(), 0..hf.len(), 5, pre, 2, None)
        .unwrap()
        .flat_map(|b| b.unwrap().images.to_f32_vec().unwrap())
        .collect();
    assert_eq!(via, direct.images.to_f32_vec().unwrap());
    let img = RgbImage::decode(&hf.read_bytes(0).unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (6, 5));
}
