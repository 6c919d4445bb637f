//! Top-activating images per latent, streamed over the images in chunks.
//!
//! An image's activation of latent j is, as Revelio's `safe_features` computes it, the dense
//! pre-activation with ReLU, relu(xc W_enc + b_enc)[j] (`RankBy::Dense`), or the top-k code's
//! value (`RankBy::Code`, the paper's definition; ReLU'd too, so a negative code value of a
//! no-ReLU SAE counts as 0). With one row per position, an image's activation is the mean over
//! its positions (the stable-concepts papers' gamma_c), and the per-position map is what the
//! grids' heat maps show.
//!
//! Per latent: `count` = images with activation > 0, `sum` = their sum (f32, as torch sums),
//! `top` = the T highest (activation, image) in descending order, ties (zeros included) by the
//! lower image index, `hist` = the histogram of its positive activations. Per image: `l0` =
//! latents with activation > 0.

use crate::sae::data::{self, RowKind};
use crate::sae::Sae;
use super::histogram::Histogram;
use super::Features;
use crate::tensor::Tensor;
use crate::{Error, Result};
use rayon::prelude::*;

/// What ranks an image for a latent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RankBy {
    /// relu(pre-activation), dense (Revelio's code).
    Dense,
    /// The top-k code (the paper's formula).
    Code,
}

impl RankBy {
    pub fn parse(s: &str) -> Result<RankBy> {
        match s {
            "dense" => Ok(RankBy::Dense),
            "code" => Ok(RankBy::Code),
            _ => Err(Error::BadOption(format!("--rank-by {s}: expected dense or code"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RankBy::Dense => "dense",
            RankBy::Code => "code",
        }
    }
}

/// Per-latent statistics over a set of images.
#[derive(Debug, Clone)]
pub struct LatentStats {
    /// Images seen (the denominator of frequencies).
    pub images: usize,
    /// [n] images with activation > 0.
    pub count: Vec<u64>,
    /// [n] sum of activations (f32).
    pub sum: Vec<f32>,
    /// [n] up to T (activation, store image index), descending.
    pub top: Vec<Vec<(f32, usize)>>,
    /// [n] histograms of the positive activations.
    pub hist: Vec<Histogram>,
    /// [images] latents active on each image, in the order seen.
    pub l0: Vec<u32>,
}

impl LatentStats {
    pub fn new(n: usize) -> LatentStats {
        LatentStats { images: 0, count: vec![0; n], sum: vec![0.0; n], top: vec![Vec::new(); n], hist: vec![Histogram::default(); n], l0: Vec::new() }
    }

    /// Adds images `ids` (ascending across calls) with activations act [ids.len(), n] (host).
    /// Parallel over blocks of latents; each latent sees the images in order.
    pub fn add(&mut self, ids: &[usize], act: &[f32], t: usize) {
        const BLOCK: usize = 256;
        let n = self.count.len();
        self.count
            .par_chunks_mut(BLOCK)
            .zip(self.sum.par_chunks_mut(BLOCK))
            .zip(self.top.par_chunks_mut(BLOCK))
            .zip(self.hist.par_chunks_mut(BLOCK))
            .enumerate()
            .for_each(|(blk, (((count, sum), top), hist))| {
                let j0 = blk * BLOCK;
                for (r, &img) in ids.iter().enumerate() {
                    let row = &act[r * n + j0..r * n + j0 + count.len()];
                    for (jj, &a) in row.iter().enumerate() {
                        if a > 0.0 {
                            count[jj] += 1;
                            sum[jj] += a;
                            hist[jj].add(a);
                        }
                        let top = &mut top[jj];
                        if top.len() < t || top.last().is_some_and(|&(v, _)| a > v) {
                            // After every entry >= a: earlier (lower-index) images win ties.
                            let pos = top.partition_point(|&(v, _)| v >= a);
                            top.insert(pos, (a, img));
                            top.truncate(t);
                        }
                    }
                }
            });
        self.l0.par_extend(act.par_chunks(n.max(1)).map(|row| row.iter().filter(|&&a| a > 0.0).count() as u32));
        self.images += ids.len();
    }
}

/// Per-image activations [rows.len() / per_image, n] (host f32) of the rows of some images.
pub fn image_activations(sae: &Sae, x: &Tensor, per_image: usize, rank_by: RankBy) -> Result<Vec<f32>> {
    let act = position_activations(sae, x, rank_by)?;
    let n = sae.cfg.d_sae;
    if per_image == 1 {
        return Ok(act);
    }
    let images = act.len() / (n * per_image).max(1);
    let mut out = vec![0.0f32; images * n];
    for i in 0..images {
        let o = &mut out[i * n..(i + 1) * n];
        for p in 0..per_image {
            let row = &act[(i * per_image + p) * n..(i * per_image + p + 1) * n];
            for (a, &v) in o.iter_mut().zip(row) {
                *a += v;
            }
        }
        for a in o.iter_mut() {
            *a /= per_image as f32;
        }
    }
    Ok(out)
}

/// Activations of each row [rows, n] (host f32): dense relu(pre) or the ReLU'd code scattered.
pub fn position_activations(sae: &Sae, x: &Tensor, rank_by: RankBy) -> Result<Vec<f32>> {
    match rank_by {
        RankBy::Dense => sae.dense_activations(x)?.to_f32_vec(),
        RankBy::Code => {
            let code = sae.encode(x)?;
            let (rows, kk) = code.vals.dims2("analysis")?;
            let n = sae.cfg.d_sae;
            let vals = code.vals.to_f32_vec()?;
            let idx = code.idx.to_vec::<i32>()?;
            let mut out = vec![0.0f32; rows * n];
            for r in 0..rows {
                for e in 0..kk {
                    out[r * n + idx[r * kk + e] as usize] = vals[r * kk + e].max(0.0);
                }
            }
            Ok(out)
        }
    }
}

/// Streams `images` of `src` through the SAE, `chunk` images at a time.
pub fn latent_stats(sae: &Sae, src: Features, images: &[usize], kind: RowKind, rank_by: RankBy, t: usize, chunk: usize) -> Result<LatentStats> {
    let mut stats = LatentStats::new(sae.cfg.d_sae);
    let mut progress = crate::progress::Progress::new("sae analyze", images.len() as u64, "img");
    for ids in images.chunks(chunk.max(1)) {
        let rows = data::from_store(src.store, src.layer, src.timestep, ids, kind, &sae.device())?;
        let act = image_activations(sae, &rows.x, rows.per_image, rank_by)?;
        stats.add(ids, &act, t);
        progress.inc(ids.len() as u64);
    }
    progress.finish();
    Ok(stats)
}
