//! Analysis outputs. Figures: line plots, histograms and heat maps drawn with plotters as SVG
//! and PNG ([`plot`]). Interpreting a trained SAE on a labelled feature store: each latent's top-activating images
//! ([`top`]), Revelio's sigma_label and label purity ([`sigma`]), PNG grids of the top images
//! with heat maps for per-position features ([`grid`]), and one HTML page ([`report`]).
//! `analyze` runs them all and writes, into the report folder: `index.html`, `grids/*.png`,
//! `average_stds.json` (Revelio's file: N -> mean sigma), `sigma.json` (with purity) and
//! `latents.json` (every listed latent's statistics and top images).

pub mod grid;
pub mod plot;
pub mod report;
pub mod sigma;
pub mod top;

use crate::features::FeatureStore;
use crate::io::write_atomic;
use crate::sae::data::{self, RowKind};
use crate::sae::Sae;
use crate::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use top::RankBy;

/// Where an analysis reads features: a (layer, timestep) of a feature store.
#[derive(Clone, Copy)]
pub struct Features<'a> {
    pub store: &'a FeatureStore,
    pub layer: &'a str,
    pub timestep: usize,
}

/// How to analyse.
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    pub rank_by: RankBy,
    /// Top images kept per latent (>= 10 for sigma; Revelio keeps 20 and uses 10).
    pub top: usize,
    /// Latents (by rank) that get a grid.
    pub grids: usize,
    /// Latents (by rank) listed in the page and latents.json.
    pub list: usize,
    /// Thumbnail size in pixels and thumbnails per grid row.
    pub thumb: u32,
    pub grid_cols: u32,
    /// Images per chunk streamed through the SAE.
    pub chunk: usize,
    /// Folder that relative image paths of the manifest are under (default: the manifest's
    /// `settings.image_root` if any, else the current folder).
    pub image_root: Option<PathBuf>,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions { rank_by: RankBy::Dense, top: 10, grids: 100, list: 1000, thumb: 96, grid_cols: 10, chunk: 256, image_root: None }
    }
}

/// One of a latent's top images.
#[derive(Debug, Clone, Serialize)]
pub struct TopImage {
    /// Index in the store (dataset order).
    pub image: usize,
    pub activation: f32,
    pub label: i64,
}

/// One listed latent.
#[derive(Debug, Clone, Serialize)]
pub struct LatentRow {
    pub id: usize,
    pub count: u64,
    pub frequency: f64,
    pub mean_act: f32,
    /// Revelio's ranking score.
    pub score: f32,
    pub sigma: f32,
    pub majority: f64,
    pub entropy: f64,
    pub top: Vec<TopImage>,
    /// The grid PNG, relative to the report folder.
    pub grid: Option<String>,
}

/// What an analysis found.
#[derive(Debug, Clone, Serialize)]
pub struct AnalysisSummary {
    pub images: usize,
    pub d_sae: usize,
    pub rank_by: RankBy,
    pub averages: Vec<sigma::TopNAverage>,
    pub latents: Vec<LatentRow>,
    /// Grid images that could not be read.
    pub missing_images: usize,
}

/// The file of a manifest image path.
pub fn resolve_image(store: &FeatureStore, root: Option<&Path>, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let setting = store.manifest().settings.get("image_root").and_then(|v| v.as_str()).map(PathBuf::from);
    match root.map(Path::to_path_buf).or(setting) {
        Some(r) => r.join(p),
        None => p.to_path_buf(),
    }
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Msg(format!("{}: {e}", path.display())))?;
    write_atomic(path, text.as_bytes())
}

/// Heat maps [h, w] of `latents` on image `img` (per-position rows only).
fn heat_maps(sae: &Sae, src: Features, img: usize, latents: &[usize], rank_by: RankBy) -> Result<Vec<(Vec<f32>, usize, usize)>> {
    let rows = data::from_store(src.store, src.layer, src.timestep, &[img], RowKind::Position, &sae.device())?;
    let Some((h, w)) = rows.map_hw else { return Ok(Vec::new()) };
    let act = top::position_activations(sae, &rows.x, rank_by)?;
    let n = sae.cfg.d_sae;
    Ok(latents.iter().map(|&j| ((0..h * w).map(|p| act[p * n + j]).collect(), h, w)).collect())
}

/// Analyses `images` of `src` with `sae` (rows of `kind`, as it was trained) and writes the
/// report into `out`.
pub fn analyze(sae: &Sae, src: Features, images: &[usize], kind: RowKind, opts: &AnalyzeOptions, out: &Path, meta: &report::ReportMeta) -> Result<AnalysisSummary> {
    let Features { store, layer, timestep } = src;
    if images.is_empty() {
        return Err(Error::Config(format!("{}: no images to analyse (check --split)", store.dir().display())));
    }
    let shape = store.feature_shape(layer, timestep)?;
    let d = if store.manifest().pooling()? == crate::features::Pooling::Tokens { shape.last().copied() } else { shape.first().copied() };
    if d != Some(sae.cfg.d_in) {
        return Err(Error::Config(format!(
            "{}: features of `{layer}` at t{timestep} have per-image shape {shape:?}; this SAE takes d_in = {}",
            store.dir().display(),
            sae.cfg.d_in
        )));
    }
    std::fs::create_dir_all(out.join("grids")).map_err(|e| Error::io(out, e))?;
    let stats = top::latent_stats(sae, src, images, kind, opts.rank_by, opts.top.max(10), opts.chunk)?;
    let labels: Vec<i64> = store.manifest().images.iter().map(|i| i.label).collect();
    let top_labels: Vec<Vec<i64>> = stats.top.iter().map(|t| t.iter().take(10).map(|&(_, i)| labels[i]).collect()).collect();
    let scores = sigma::revelio_scores(&stats.count, &stats.sum, stats.images);
    let ranked = sigma::ranking(&scores);
    let averages = sigma::averages(&ranked, &top_labels, &sigma::top_counts(sae.cfg.d_sae));

    let listed = &ranked[..opts.list.min(ranked.len())];
    let mut rows: Vec<LatentRow> = listed
        .iter()
        .map(|&j| LatentRow {
            id: j,
            count: stats.count[j],
            frequency: stats.count[j] as f64 / stats.images as f64,
            mean_act: stats.sum[j] / (stats.count[j] as f32 + 1e-8),
            score: scores[j],
            sigma: sigma::label_std(&top_labels[j]),
            majority: sigma::majority_fraction(&top_labels[j]),
            entropy: sigma::label_entropy(&top_labels[j]),
            top: stats.top[j].iter().map(|&(a, i)| TopImage { image: i, activation: a, label: labels[i] }).collect(),
            grid: None,
        })
        .collect();

    // Grids of the first `grids` listed latents; heat maps image by image for position rows.
    let gridded = opts.grids.min(rows.len());
    let mut heat: BTreeMap<(usize, usize), (Vec<f32>, usize, usize)> = BTreeMap::new();
    if kind == RowKind::Position {
        let mut by_image: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for r in &rows[..gridded] {
            for t in &r.top {
                by_image.entry(t.image).or_default().push(r.id);
            }
        }
        for (img, lats) in by_image {
            for (j, m) in lats.iter().zip(heat_maps(sae, src, img, &lats, opts.rank_by)?) {
                heat.insert((*j, img), m);
            }
        }
    }
    // Images come from the dataset the store was extracted from (any format, parquet included);
    // a store that does not record it, or `--image-root`, reads files by path.
    let dataset = match opts.image_root {
        Some(_) => None,
        None => match crate::features::dataset::reopen(store.manifest()) {
            Ok(ds) => Some(ds),
            Err(e) => {
                eprintln!("note: grid images are read by path, not through the dataset: {e}");
                None
            }
        },
    };
    let load = |i: usize| -> Option<image::RgbImage> {
        match &dataset {
            Some(ds) => {
                let img = ds.load_image(i).ok()?;
                image::RgbImage::from_raw(img.width() as u32, img.height() as u32, img.pixels().to_vec())
            }
            None => {
                let path = resolve_image(store, opts.image_root.as_deref(), &store.manifest().images[i].path);
                image::open(path).ok().map(|d| d.to_rgb8())
            }
        }
    };
    let mut missing = 0;
    for r in rows.iter_mut().take(gridded) {
        let tiles: Vec<grid::Tile> =
            r.top.iter().map(|t| grid::Tile { image: load(t.image), heat: heat.remove(&(r.id, t.image)) }).collect();
        let rel = format!("grids/latent_{:06}.png", r.id);
        missing += grid::render(&tiles, opts.thumb, opts.grid_cols, &out.join(&rel))?;
        r.grid = Some(rel);
    }

    let summary = AnalysisSummary { images: stats.images, d_sae: sae.cfg.d_sae, rank_by: opts.rank_by, averages, latents: rows, missing_images: missing };
    // Revelio's average_stds.json: {"100": sigma, "200": ...} in ascending N.
    let stds: Vec<String> = summary.averages.iter().map(|a| format!("\"{}\": {}", a.n, serde_json::json!(a.sigma_label))).collect();
    write_atomic(&out.join("average_stds.json"), format!("{{{}}}\n", stds.join(", ")).as_bytes())?;
    write_json(&out.join("sigma.json"), &serde_json::json!({"rank_by": opts.rank_by, "images": stats.images, "averages": summary.averages}))?;
    write_json(&out.join("latents.json"), &summary.latents)?;
    report::write_html(out, &summary, meta)?;
    Ok(summary)
}
