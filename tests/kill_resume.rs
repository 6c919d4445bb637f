//! Kill -9 at random moments, then rerun: `revelio extract`, `sae train` and `diffc train` on the
//! small SD fixture pipeline and a 48-image manifest, each killed (SIGKILL, no chance to clean
//! up) several times at seeded random moments of a run, then run to the end, must leave exactly
//! what one uninterrupted run leaves: the same features, SAE weights and optimizer state, and
//! classifier weights and metrics, bit for bit.

mod common;

use revelio::features::FeatureStore;
use revelio::{DType, Device};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Kills per command.
const KILLS: usize = 4;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("revelio-kill-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A manifest of 32 train and 16 test images in two classes (colour ramps of their own).
fn manifest(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("imgs")).unwrap();
    let mut csv = String::from("path,label,split\n");
    for i in 0..48 {
        let class = i % 2;
        let img = image::RgbImage::from_fn(20, 18, |x, y| {
            let v = (x * 9 + y * 5 + i as u32 * 13) as u8;
            if class == 0 {
                image::Rgb([v, 40, 255 - v])
            } else {
                image::Rgb([30, v, (y * 10) as u8])
            }
        });
        img.save(dir.join(format!("imgs/{i:02}.png"))).unwrap();
        csv.push_str(&format!("imgs/{i:02}.png,{},{}\n", ["cat", "dog"][class], if i < 32 { "train" } else { "test" }));
    }
    let path = dir.join("data.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

fn revelio(args: &[&str], out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_revelio"));
    c.args(args).arg("--out").arg(out).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    c
}

/// Runs `args` into `out` to the end; returns how long it took.
fn run_to_end(args: &[&str], out: &Path) -> Duration {
    let start = Instant::now();
    let res = revelio(args, out).output().unwrap();
    assert!(res.status.success(), "revelio {}: {}", args.join(" "), String::from_utf8_lossy(&res.stderr));
    start.elapsed()
}

/// Starts `args` into `out` KILLS times, each killed with SIGKILL after a random 5-65 % of
/// `full` (a seeded draw; the part of a run left shrinks as it resumes), then runs it to the
/// end. Returns how many kills hit a running process; at least the first must.
fn killed_then_finished(args: &[&str], out: &Path, full: Duration, seed: u64) -> usize {
    let mut hits = 0;
    for k in 0..KILLS {
        let u = 0.05 + 0.6 * revelio::rng::uniform(seed, k as u64) as f64;
        let mut child = revelio(args, out).spawn().unwrap();
        std::thread::sleep(full.mul_f64(u));
        if child.try_wait().unwrap().is_none() {
            hits += 1;
        }
        child.kill().unwrap_or(());
        child.wait().unwrap();
    }
    run_to_end(args, out);
    assert!(hits > 0, "revelio {}: no kill landed in a running process", args.join(" "));
    hits
}

fn same_file_tensors(a: &Path, b: &Path) {
    assert!(common::file_bits(a) == common::file_bits(b), "{} and {} differ", a.display(), b.display());
}

/// metrics.jsonl without its timings.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for k in ["train_images_per_s", "seconds"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        })
        .collect()
}

#[test]
fn killed_runs_rerun_to_what_an_uninterrupted_run_gives() {
    let dir = tmp("all");
    let data = manifest(&dir);
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/extract/sd");
    let (model, data) = (model.to_str().unwrap().to_string(), data.to_str().unwrap().to_string());

    // extract: shards of 2 images, so a kill lands between shards or inside one.
    let extract = [
        "extract", "--model", &model, "--data", &data, "--layers", "mid,up.1", "--timesteps", "25,200,500", "--resolution", "16",
        "--pooling", "none", "--batch-size", "2", "--shard-size", "2", "--device", "cpu", "--workers", "1",
    ];
    let (a, b) = (dir.join("store-a"), dir.join("store-b"));
    let full = run_to_end(&extract, &a);
    let hits = killed_then_finished(&extract, &b, full, 1);
    let (sa, sb) = (FeatureStore::open(&a).unwrap(), FeatureStore::open(&b).unwrap());
    assert_eq!(sa.manifest().images, sb.manifest().images);
    assert_eq!(sa.labels(), sb.labels());
    for layer in ["mid", "up.1"] {
        for t in [25, 200, 500] {
            let bits = |s: &FeatureStore| s.read_all(layer, t, DType::F32, &Device::Cpu).unwrap().to_f32_vec().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert!(bits(&sa) == bits(&sb), "extract: {layer} at t = {t} differs after {hits} kills");
        }
    }
    println!("extract: {full:?} uninterrupted, {hits} of {KILLS} kills hit a running process");

    // sae train on the store: a checkpoint every 100 of 1500 steps.
    let store = a.to_str().unwrap().to_string();
    let sae = [
        "sae", "train", "--features", &store, "--layer", "mid", "--timestep", "25", "--split", "train", "--k", "4", "--expansion", "4",
        "--batch", "8", "--steps", "1500", "--warmup", "20", "--checkpoint-every", "100", "--device", "cpu",
    ];
    let (a, b) = (dir.join("sae-a"), dir.join("sae-b"));
    let full = run_to_end(&sae, &a);
    let hits = killed_then_finished(&sae, &b, full, 2);
    for f in ["sae_weights.safetensors", "checkpoint.safetensors"] {
        same_file_tensors(&a.join(f), &b.join(f));
    }
    assert_eq!(std::fs::read_to_string(a.join("cfg.json")).unwrap(), std::fs::read_to_string(b.join("cfg.json")).unwrap());
    println!("sae train: {full:?} uninterrupted, {hits} of {KILLS} kills hit a running process");

    // diffc train on the store: a checkpoint every epoch.
    let diffc = [
        "diffc", "train", "--features", &store, "--layer", "up.1", "--timestep", "25", "--epochs", "16", "--widths", "8,8",
        "--batch-size", "4", "--dropout", "0", "--device", "cpu",
    ];
    let (a, b) = (dir.join("diffc-a"), dir.join("diffc-b"));
    let full = run_to_end(&diffc, &a);
    let hits = killed_then_finished(&diffc, &b, full, 3);
    for f in ["classifier.safetensors", "classifier_best.safetensors"] {
        same_file_tensors(&a.join(f), &b.join(f));
    }
    assert_eq!(metrics(&a), metrics(&b));
    println!("diffc train: {full:?} uninterrupted, {hits} of {KILLS} kills hit a running process");
    std::fs::remove_dir_all(&dir).unwrap();
}
