//! `revelio demo` at its tiny size, through the binary as a user runs it: every output file is
//! there and valid (the report's grid images decode, the metrics JSON parses with the figures in
//! range, the sweep plot is a PNG), the summary tells the truth about the weights, and the
//! folder rules hold (a demo folder is replaced, any other is refused).

use std::path::{Path, PathBuf};
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("revelio-test-demo-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn png(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", path.display());
    let img = image::load_from_memory(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (img.width(), img.height())
}

fn demo(out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_revelio"))
        .args(["demo", "--size", "tiny", "--device", "cpu", "--out"])
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn tiny_demo_writes_every_output() {
    let out = tmp("tiny");
    let run = demo(&out);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "demo failed:\n{stderr}");

    // The summary: printed, and in summary.json.
    assert!(stdout.contains("RANDOM"), "{stdout}");
    assert!(stdout.contains("revelio extract --model sd15/"), "{stdout}");
    let s = json(&out.join("summary.json"));
    assert_eq!(s["random_weights"], true);
    assert_eq!(s["images"], 72);
    assert_eq!(s["train_images"].as_u64().unwrap() + s["test_images"].as_u64().unwrap(), 72);
    assert!(s["extract"]["images_per_second"].as_f64().unwrap() > 0.0);
    let fvu = s["sae"]["fvu"].as_f64().unwrap();
    assert!(fvu > 0.0 && fvu < 1.5, "FVU {fvu}");
    assert!((s["sae"]["l0"].as_f64().unwrap() - 4.0).abs() < 1e-9, "L0 must equal k = 4");
    let dead = s["sae"]["dead_fraction"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&dead));
    let purity = &s["sae"]["purity"];
    let judged = purity["latents"].as_u64().unwrap();
    assert!(judged > 0, "no latent fired on 10 images: {purity}");
    assert!(purity["pure_any"].as_u64().unwrap() <= judged);

    // The feature store: both layers at both timesteps, every image.
    let m = json(&out.join("features/manifest.json"));
    assert_eq!(m["layers"], serde_json::json!(["mid", "up.1"]));
    assert_eq!(m["timesteps"], serde_json::json!([25, 200]));
    assert_eq!(m["images"].as_array().unwrap().len(), 72);
    assert_eq!(m["failures"].as_array().map_or(0, Vec::len), 0);

    // The SAE and its evaluation.
    assert!(out.join("sae/sae_weights.safetensors").is_file());
    assert!(out.join("sae/cfg.json").is_file());
    assert_eq!(json(&out.join("sae/eval.json"))["fvu"].as_f64().unwrap(), fvu);

    // The report: the explorer's pages, the figures' JSON, and grids that decode and are linked
    // from their latent's page (tests/explorer.rs opens it in a browser).
    let html = std::fs::read_to_string(out.join("report/index.html")).unwrap();
    assert!(html.contains("data/index.js") && out.join("report/latent.html").is_file());
    let sigma = json(&out.join("report/sigma.json"));
    assert!(!sigma["averages"].as_array().unwrap().is_empty());
    assert!(json(&out.join("report/average_stds.json")).as_object().is_some());
    let latents = json(&out.join("report/latents.json"));
    let grids = latents.as_array().unwrap().iter().filter(|l| l["grid"].is_string()).count();
    assert_eq!(grids, 4, "the tiny demo draws 4 grids");
    for l in latents.as_array().unwrap().iter().filter(|l| l["grid"].is_string()) {
        let g = l["grid"].as_str().unwrap();
        let page = out.join(format!("report/data/latents/{:06}.js", l["id"].as_u64().unwrap()));
        assert!(std::fs::read_to_string(&page).unwrap().contains(g), "{} does not link {g}", page.display());
        let (w, h) = png(&out.join("report").join(g));
        assert!(w > 0 && h > 0);
    }
    assert!(!stderr.contains("could not be read"), "grid images were missing:\n{stderr}");

    // Diff-C: a row per (layer, timestep) with accuracies in [0, 1], the table and the plot.
    let rows = json(&out.join("diffc/sweep.json"));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        let a = r["best_test_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a), "{r}");
    }
    assert_eq!(std::fs::read_to_string(out.join("diffc/sweep.csv")).unwrap().lines().count(), 5);
    let (w, h) = png(&out.join("diffc/sweep.png"));
    assert!(w >= 400 && h >= 300);

    // A second demo into the same folder replaces it; a folder that is not a demo's is refused.
    std::fs::write(out.join("stale.txt"), "x").unwrap();
    let again = demo(&out);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(!out.join("stale.txt").exists());
    let other = tmp("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("thesis.tex"), "x").unwrap();
    let refused = demo(&other);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not made by `revelio demo`"));
    assert!(other.join("thesis.tex").exists());
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&other);
}
