//! Layer and timestep sweeps: one classifier per (layer, timestep) of a feature store, each in
//! its own run folder (so an interrupted sweep resumes and skips finished runs), then a table
//! (sweep.csv, sweep.json), the figure the paper draws: test top-1 over timesteps, one line per
//! layer (sweep.png), and a page with the figure and the numbers beside it (index.html, in the
//! SAE explorer's style; opens from disk).

use super::data::{FeatureSource, StoreSource, TokenLayout};
use super::train::{train, ModelOptions, TrainConfig, TrainSummary};
use crate::analysis::html::{self, escape};
use crate::analysis::plot::{Figure, LinePlot, Series};
use crate::features::FeatureStore;
use crate::io::write_atomic;
use crate::tensor::Device;
use crate::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One row of the sweep table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    pub layer: String,
    pub timestep: usize,
    pub last_epoch: usize,
    pub last_test_accuracy: f64,
    pub best_epoch: usize,
    pub best_test_accuracy: f64,
    pub num_params: usize,
    /// The run folder, relative to the sweep folder.
    pub run: String,
}

/// The run folder name of (layer, timestep): `up.1_t25`.
pub fn run_name(layer: &str, timestep: usize) -> String {
    let safe: String = layer.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
    format!("{safe}_t{timestep}")
}

/// The CSV table: a header and one line per row.
pub fn table_csv(rows: &[SweepRow]) -> String {
    let mut s = String::from("layer,timestep,last_epoch,last_test_accuracy,best_epoch,best_test_accuracy,num_params,run\n");
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{:.6},{},{:.6},{},{}\n",
            r.layer, r.timestep, r.last_epoch, r.last_test_accuracy, r.best_epoch, r.best_test_accuracy, r.num_params, r.run
        ));
    }
    s
}

/// Test top-1 (%) of the last epoch over timesteps, one line per layer in first-seen order;
/// timesteps at equal spacing.
pub fn sweep_plot(rows: &[SweepRow]) -> LinePlot {
    let mut series: Vec<Series> = Vec::new();
    for r in rows {
        let p = (r.timestep as f64, 100.0 * r.last_test_accuracy);
        match series.iter_mut().find(|s| s.name == r.layer) {
            Some(s) => s.points.push(p),
            None => series.push(Series { name: r.layer.clone(), points: vec![p] }),
        }
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    LinePlot {
        title: "Diff-C test top-1 by layer and timestep".into(),
        x_label: "timestep t".into(),
        y_label: "top-1 accuracy (%)".into(),
        series,
        categorical_x: true,
        y_range: Some((0.0, 100.0)),
        width: 900,
        height: 560,
    }
}

/// The sweep's page: the plot (SVG) with the table of every run beside it.
pub fn sweep_html(rows: &[SweepRow], plot: &LinePlot) -> Result<String> {
    let title = "Diff-C sweep: test top-1 by layer and timestep";
    let mut h = html::head(title, &[]);
    h.push_str(&format!("<h1>{title}</h1>\n<div class=side-by-side>\n<figure>{}<figcaption><a href=\"sweep.png\">PNG</a>, <a href=\"sweep.csv\">CSV</a></figcaption></figure>\n", plot.svg()?));
    h.push_str("<table class=numbers><tr><th>layer</th><th>t</th><th>last epoch</th><th>test top-1 (last)</th><th>best epoch</th><th>test top-1 (best)</th><th>parameters</th></tr>\n");
    for r in rows {
        h.push_str(&format!(
            "<tr><td><a href=\"{run}/\">{layer}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            r.timestep,
            r.last_epoch,
            html::num(100.0 * r.last_test_accuracy, 2),
            r.best_epoch,
            html::num(100.0 * r.best_test_accuracy, 2),
            r.num_params,
            run = escape(&r.run),
            layer = escape(&r.layer),
        ));
    }
    h.push_str("</table>\n</div>\n");
    h.push_str(html::FOOT);
    Ok(h)
}

fn write_outputs(rows: &[SweepRow], out: &Path) -> Result<()> {
    write_atomic(&out.join("sweep.csv"), table_csv(rows).as_bytes())?;
    write_atomic(&out.join("sweep.json"), serde_json::to_string_pretty(rows).expect("JSON").as_bytes())?;
    let plot = sweep_plot(rows);
    plot.save(&out.join("sweep.png"))?;
    html::write_style(out)?;
    write_atomic(&out.join("index.html"), sweep_html(rows, &plot)?.as_bytes())
}

/// Checks that the store at `store_dir` holds every (layer, timestep), before any training.
pub fn check_store(store_dir: &Path, layers: &[String], timesteps: &[usize]) -> Result<()> {
    let store = FeatureStore::open(store_dir)?;
    for layer in layers {
        for &t in timesteps {
            store.feature_shape(layer, t)?;
        }
    }
    Ok(())
}

/// `sweep` over the store at `store_dir` (its splits `splits`, DiT maps in `layout`), every
/// (layer, timestep) checked against the store before any training starts.
#[allow(clippy::too_many_arguments)]
pub fn sweep_store(
    store_dir: &Path,
    layers: &[String],
    timesteps: &[usize],
    splits: (&str, &str),
    layout: TokenLayout,
    opts: &ModelOptions,
    cfg: &TrainConfig,
    out: &Path,
    device: &Device,
) -> Result<Vec<SweepRow>> {
    check_store(store_dir, layers, timesteps)?;
    let mut open = |layer: &str, t: usize| -> Result<Box<dyn FeatureSource>> { Ok(Box::new(StoreSource::open(store_dir, layer, t, splits.0, splits.1, layout)?)) };
    sweep(layers, timesteps, &mut open, opts, cfg, out, device)
}

/// Trains one classifier per (layer, timestep) on the features `open(layer, timestep)` gives
/// (a store's, or computed online) into `out/<run_name>`, writing the table and plot after each
/// run. The caller checks every (layer, timestep) before (as `sweep_store` does).
pub fn sweep(
    layers: &[String],
    timesteps: &[usize],
    open: &mut dyn FnMut(&str, usize) -> Result<Box<dyn FeatureSource>>,
    opts: &ModelOptions,
    cfg: &TrainConfig,
    out: &Path,
    device: &Device,
) -> Result<Vec<SweepRow>> {
    if layers.is_empty() || timesteps.is_empty() {
        return Err(Error::BadOption("diffc sweep: give at least one layer and one timestep".into()));
    }
    let mut rows = Vec::new();
    for layer in layers {
        for &t in timesteps {
            let name = run_name(layer, t);
            eprintln!("diffc sweep: {layer} at t = {t} -> {}", out.join(&name).display());
            let mut source = open(layer, t)?;
            let dir: PathBuf = out.join(&name);
            let s: TrainSummary =
                train(source.as_mut(), opts, cfg, &dir, device).with_context(|| format!("diffc sweep: {layer} at t = {t}"))?;
            rows.push(SweepRow {
                layer: layer.clone(),
                timestep: t,
                last_epoch: s.last_epoch,
                last_test_accuracy: s.last_test_accuracy,
                best_epoch: s.best_epoch,
                best_test_accuracy: s.best_test_accuracy,
                num_params: s.num_params,
                run: name,
            });
            write_outputs(&rows, out)?;
        }
    }
    Ok(rows)
}
