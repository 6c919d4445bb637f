//! Analysis outputs. Figures: line plots, histograms and heat maps drawn with plotters as SVG
//! and PNG ([`plot`]). Interpreting a trained SAE on a labelled feature store: each latent's
//! top-activating images and activation histogram ([`top`], [`histogram`]), Revelio's
//! sigma_label and label purity ([`sigma`]), nearest latents by decoder cosine
//! ([`neighbours`]), where on its top images a latent fires ([`heat`]), thumbnails written once
//! ([`thumbs`]), PNG grids for papers ([`grid`]) and the feature explorer ([`explorer`], pages
//! styled by [`html`]). `analyze` runs them all and writes, into the report folder: the
//! explorer (`index.html`, `latent.html`, `assets/`, `data/`, `thumbs/`, `figures/*.png`),
//! `grids/*.png`, `average_stds.json` (Revelio's file: N -> mean sigma), `sigma.json` (with
//! purity) and `latents.json` (the first `--list` latents' statistics and top images).

pub mod explorer;
pub mod grid;
pub mod heat;
pub mod histogram;
pub mod html;
pub mod neighbours;
pub mod plot;
pub mod sigma;
pub mod thumbs;
pub mod top;

use crate::features::FeatureStore;
use crate::io::write_atomic;
use crate::sae::data::RowKind;
use crate::sae::Sae;
use crate::{Error, Result};
use explorer::{Explorer, ReportMeta};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use top::{LatentStats, RankBy};

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
    /// Latents (by rank) that get a PNG grid.
    pub grids: usize,
    /// Latents (by rank) in latents.json.
    pub list: usize,
    /// Latents that get a page in the explorer (None: all).
    pub latents: Option<Vec<usize>>,
    /// Nearest latents by decoder cosine shown per page (0: none).
    pub neighbours: usize,
    /// Thumbnail size in pixels and thumbnails per grid row.
    pub thumb: u32,
    pub grid_cols: u32,
    /// Images per chunk streamed through the SAE.
    pub chunk: usize,
    /// Folder that relative image paths of the manifest are under (default: the dataset the
    /// store records, else the manifest's `settings.image_root`, else the current folder).
    pub image_root: Option<PathBuf>,
    /// The split analysed (for messages; empty: all images).
    pub split: String,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            rank_by: RankBy::Dense,
            top: 10,
            grids: 100,
            list: 1000,
            latents: None,
            neighbours: 10,
            thumb: 96,
            grid_cols: 10,
            chunk: 256,
            image_root: None,
            split: String::new(),
        }
    }
}

/// Top images per latent in the index's table.
const STRIP: usize = 5;

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
    /// The most common class of the top-10 images (None with no images).
    pub class: Option<i64>,
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
    /// Images that could not be read (placeholders shown).
    pub missing_images: usize,
    /// What the report warns about (also shown on its pages).
    pub notes: Vec<String>,
}

fn write_json(path: &Path, v: &(impl Serialize + ?Sized)) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    write_atomic(path, text.as_bytes())
}

/// Which latents get a page: all, or those of `--latents` that exist (the others are named
/// in a note).
fn page_set(asked: Option<&[usize]>, n: usize, notes: &mut Vec<String>) -> Vec<bool> {
    let Some(ids) = asked else { return vec![true; n] };
    let mut pages = vec![false; n];
    let mut absent = Vec::new();
    for &j in ids {
        match pages.get_mut(j) {
            Some(p) => *p = true,
            None => absent.push(j.to_string()),
        }
    }
    if !absent.is_empty() {
        let verb = if absent.len() == 1 { "is not a latent" } else { "are not latents" };
        notes.push(format!("--latents: {} {verb} of this SAE (it has {n}: ids 0 to {}); left out", absent.join(", "), n.saturating_sub(1)));
    }
    pages
}

/// "split `x` has no images" with the splits the store has.
fn empty_split_note(store: &FeatureStore, split: &str) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for i in &store.manifest().images {
        *counts.entry(i.split.as_str()).or_default() += 1;
    }
    let have: Vec<String> = counts.iter().map(|(s, c)| format!("`{s}` {c}")).collect();
    format!(
        "{}: split `{split}` has no images to analyse (the store's {} images: {}); this report has no statistics. Pass --split with one of them.",
        store.dir().display(),
        store.manifest().images.len(),
        have.join(", ")
    )
}

/// Every latent's row, in rank order.
fn latent_rows(stats: &LatentStats, scores: &[f32], ranked: &[usize], top_labels: &[Vec<i64>], labels: &[i64]) -> Vec<LatentRow> {
    ranked
        .iter()
        .map(|&j| LatentRow {
            id: j,
            count: stats.count[j],
            frequency: if stats.images == 0 { 0.0 } else { stats.count[j] as f64 / stats.images as f64 },
            mean_act: stats.sum[j] / (stats.count[j] as f32 + 1e-8),
            score: scores[j],
            sigma: sigma::label_std(&top_labels[j]),
            majority: sigma::majority_fraction(&top_labels[j]),
            entropy: sigma::label_entropy(&top_labels[j]),
            top: stats.top[j].iter().map(|&(a, i)| TopImage { image: i, activation: a, label: labels[i] }).collect(),
            class: sigma::mode(&top_labels[j]).map(|(c, _)| c),
            grid: None,
        })
        .collect()
}

/// Analyses `images` of `src` with `sae` (rows of `kind`, as it was trained) and writes the
/// report into `out`. Bad input (no images in the split, latents that do not exist, images
/// that cannot be read, a store without positions) gives a report that says so.
pub fn analyze(sae: &Sae, src: Features, images: &[usize], kind: RowKind, opts: &AnalyzeOptions, out: &Path, meta: &ReportMeta) -> Result<AnalysisSummary> {
    let Features { store, layer, timestep } = src;
    let shape = store.feature_shape(layer, timestep)?;
    let d = if store.manifest().pooling()? == crate::features::Pooling::Tokens { shape.last().copied() } else { shape.first().copied() };
    if d != Some(sae.cfg.d_in) {
        return Err(Error::BadInput(format!(
            "{}: features of `{layer}` at t{timestep} have per-image shape {shape:?}; this SAE takes d_in = {}",
            store.dir().display(),
            sae.cfg.d_in
        )));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let n = sae.cfg.d_sae;
    let mut notes = Vec::new();
    let mut pages = page_set(opts.latents.as_deref(), n, &mut notes);
    let stats = if images.is_empty() {
        notes.push(empty_split_note(store, &opts.split));
        pages.fill(false);
        LatentStats::new(n)
    } else {
        top::latent_stats(sae, src, images, kind, opts.rank_by, opts.top.max(10), opts.chunk)?
    };
    let labels: Vec<i64> = store.manifest().images.iter().map(|i| i.label).collect();
    let top_labels: Vec<Vec<i64>> = stats.top.iter().map(|t| t.iter().take(10).map(|&(_, i)| labels[i]).collect()).collect();
    let scores = sigma::revelio_scores(&stats.count, &stats.sum, stats.images);
    let ranked = sigma::ranking(&scores);
    let averages = if images.is_empty() { Vec::new() } else { sigma::averages(&ranked, &top_labels, &sigma::top_counts(n)) };
    let mut rows = latent_rows(&stats, &scores, &ranked, &top_labels, &labels);
    let neighbours = neighbours::nearest(sae, opts.neighbours)?;

    // Heat maps of every shown top image (pages, grids), image by image.
    let gridded = opts.grids.min(rows.len());
    let mut wanted: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (rank, r) in rows.iter().enumerate() {
        if pages[r.id] || rank < gridded {
            for t in r.top.iter().filter(|t| t.activation > 0.0) {
                wanted.entry(t.image).or_default().push(r.id);
            }
        }
    }
    let maps = heat::maps(sae, src, &wanted, opts.rank_by, opts.chunk)?;
    if maps.is_none() && !wanted.is_empty() {
        notes.push(format!(
            "No heat maps: the store holds one pooled vector per image for `{layer}` at t{timestep}, so where a latent fires cannot be recomputed; extract with --pooling none (or avg:HxW) to see it."
        ));
    }

    // Thumbnails of every image shown, each written once; the grids' kept in memory.
    let grid_images: HashSet<usize> = rows[..gridded].iter().flat_map(|r| r.top.iter().filter(|t| t.activation > 0.0).map(|t| t.image)).collect();
    let mut shown = Explorer::shown_images(&rows, &pages, STRIP);
    shown.extend(grid_images.iter().filter(|i| shown.binary_search(i).is_err()).copied().collect::<Vec<_>>());
    shown.sort_unstable();
    let thumbs = thumbs::write(store, opts.image_root.as_deref(), &shown, &grid_images, opts.thumb, out)?;
    if let Some(first) = thumbs.missing.first() {
        notes.push(format!(
            "{} of the {} images shown could not be read (moved or deleted since extraction?) and show as grey placeholders; the first: {} ({}). Pass --image-root if the images moved.",
            thumbs.missing.len(),
            shown.len(),
            first.path,
            first.error
        ));
    }
    for r in rows.iter_mut().take(gridded) {
        let tiles: Vec<grid::Tile> = r
            .top
            .iter()
            .filter(|t| t.activation > 0.0)
            .filter_map(|t| {
                let heat = maps.as_ref().and_then(|m| Some((m.maps.get(&(r.id, t.image))?.as_slice(), m.hw.0, m.hw.1)));
                Some(grid::Tile { image: thumbs.kept.get(&t.image)?, heat })
            })
            .collect();
        if !tiles.is_empty() {
            let rel = format!("grids/latent_{:06}.png", r.id);
            grid::render(&tiles, opts.thumb, opts.grid_cols, &out.join(&rel))?;
            r.grid = Some(rel);
        }
    }

    // Revelio's average_stds.json: {"100": sigma, "200": ...} in ascending N.
    let stds: Vec<String> = averages.iter().map(|a| format!("\"{}\": {}", a.n, serde_json::json!(a.sigma_label))).collect();
    write_atomic(&out.join("average_stds.json"), format!("{{{}}}\n", stds.join(", ")).as_bytes())?;
    write_json(&out.join("sigma.json"), &serde_json::json!({"rank_by": opts.rank_by, "images": stats.images, "averages": averages}))?;
    write_json(&out.join("latents.json"), &rows[..opts.list.min(rows.len())])?;
    Explorer {
        meta,
        notes: notes.clone(),
        images: stats.images,
        d_sae: n,
        averages: &averages,
        rows: &rows,
        hist: &stats.hist,
        neighbours: &neighbours,
        l0: &stats.l0,
        maps: maps.as_ref(),
        pages: &pages,
        missing: &thumbs.missing,
        strip: STRIP,
    }
    .write(out)?;
    rows.truncate(opts.list);
    Ok(AnalysisSummary { images: stats.images, d_sae: n, rank_by: opts.rank_by, averages, latents: rows, missing_images: thumbs.missing.len(), notes })
}
