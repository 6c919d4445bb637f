//! `revelio extract`: every image of a dataset through the VAE, noised to each timestep, through
//! the U-Net (or DiT), and the chosen layers' features pooled and stored in a feature store.
//!
//! Work is laid on a fixed grid so that results and files do not depend on batch size, order,
//! part or device:
//! - blocks of [`BLOCK`] images (dataset order); `--shard i/n` gives part i the blocks
//!   `i * B / n .. (i + 1) * B / n` and writes its store to `<out>/part-i-of-n/` (joined by
//!   [`super::store::merge_parts`]);
//! - store shards of `shard_size` images (a power of two up to [`BLOCK`], so shards never cross a
//!   block), aligned to multiples of it: a rerun skips the shards already written;
//! - the latent cache (`--latent-cache`) holds one shard per block: the VAE latents, reused by
//!   every timestep and by later runs with other layers, timesteps or pooling;
//! - the noise of image i at timestep t, draw d, is `rng::normal` on stream
//!   `rng::derive(seed, [i, t, d])` over its latent in CHW order.
//!
//! Decoding runs ahead on a thread pool ([`super::prefetch`]); one forward pass per (batch,
//! timestep, draw) serves all layers and stops after the deepest.

use super::conditioning::{Conditioning, DitClass};
use super::dataset::{Dataset, DatasetOptions};
use super::image::Preprocess;
use super::clip_prompts::{check_template, choose_prompts, PromptChooser};
use super::prefetch::Prefetcher;
use super::store::{read_manifest, Failure, FeatureStoreWriter, ImageEntry, Manifest, Pooling, STORE_FORMAT};
use crate::models::pipeline::{Pipeline, Posterior};
use crate::models::taps::TapRequest;
use crate::progress::Progress;
use crate::tensor::{DType, Device, Tensor};
use crate::{ops, rng, Context, Error, Result};
use rayon::prelude::*;
use serde_json::{json, Map};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Images per block: the unit of `--shard i/n` parts and of the latent cache.
pub const BLOCK: usize = 256;

/// Largest automatic store shard, in bytes of features.
const SHARD_BYTES: usize = 256 << 20;

/// Everything `revelio extract` takes.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// A diffusers pipeline folder (Stable Diffusion or DiT).
    pub model: PathBuf,
    pub dataset: PathBuf,
    pub dataset_options: DatasetOptions,
    /// The feature store folder (parts go to `<out>/part-i-of-n/`).
    pub out: PathBuf,
    pub layers: Vec<String>,
    pub timesteps: Vec<usize>,
    pub resolution: usize,
    pub batch_size: usize,
    pub pooling: Pooling,
    /// Storage dtype of the features.
    pub dtype: DType,
    /// The dtype the models run in.
    pub model_dtype: DType,
    pub device: Device,
    pub seed: u64,
    pub noise_draws: usize,
    pub posterior: Posterior,
    pub conditioning: Conditioning,
    /// DiT: add noise at the timestep (the reference feeds the clean latent).
    pub dit_noise: bool,
    pub dit_class: DitClass,
    /// (i, n): part i (0-based) of n.
    pub part: (usize, usize),
    /// Images per store shard; `None`: the largest power of two up to BLOCK under 256 MiB.
    pub shard_size: Option<usize>,
    pub latent_cache: Option<PathBuf>,
    /// Decode threads (all cores when `None`).
    pub workers: Option<usize>,
    /// Stop after writing this many shards (for time-limited jobs; a rerun resumes).
    pub max_shards: Option<usize>,
}

/// What a run did and where the time went.
#[derive(Debug, Clone, Default)]
pub struct ExtractSummary {
    /// The store folder written.
    pub out: PathBuf,
    /// "U-Net" or "DiT": what `model` timed.
    pub model_name: &'static str,
    /// Images of this part, and those already stored before this run.
    pub images: usize,
    pub already_done: usize,
    /// Images processed by this run.
    pub processed: usize,
    pub failures: usize,
    pub shards_written: usize,
    /// True when `max_shards` stopped the run before the end.
    pub stopped: bool,
    pub elapsed: Duration,
    /// Decoding and preprocessing (on the pool, overlapped), and the time the model waited for it.
    pub decode: Duration,
    pub decode_wait: Duration,
    pub vae: Duration,
    pub model: Duration,
    pub write: Duration,
}

impl ExtractSummary {
    pub fn images_per_second(&self) -> f64 {
        self.processed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The images [start, end) of part `i` of `n`: unions of whole blocks of `block` images.
pub fn part_range(images: usize, i: usize, n: usize, block: usize) -> std::ops::Range<usize> {
    let blocks = images.div_ceil(block);
    let (b0, b1) = (i * blocks / n, (i + 1) * blocks / n);
    (b0 * block).min(images)..(b1 * block).min(images)
}

/// The folder part (i, n) of a run writes to.
pub fn part_dir(out: &Path, part: (usize, usize)) -> PathBuf {
    if part.1 <= 1 {
        out.to_path_buf()
    } else {
        out.join(format!("part-{:05}-of-{:05}", part.0, part.1))
    }
}

/// Shards of `size` aligned to multiples of it, covering `range`.
pub(crate) fn grid(range: std::ops::Range<usize>, size: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut s = range.start;
    while s < range.end {
        let e = ((s / size + 1) * size).min(range.end);
        out.push((s, e - s));
        s = e;
    }
    out
}

fn check(opts: &ExtractOptions, ds: &Dataset) -> Result<()> {
    let bad = |m: String| Err(Error::BadOption(m));
    if opts.layers.is_empty() {
        return bad("--layers: name at least one layer".into());
    }
    if opts.timesteps.is_empty() {
        return bad("--timesteps: give at least one timestep".into());
    }
    let mut seen = HashSet::new();
    if let Some(t) = opts.timesteps.iter().find(|t| !seen.insert(**t)) {
        return bad(format!("--timesteps: {t} is given twice"));
    }
    let mut seen = HashSet::new();
    if let Some(l) = opts.layers.iter().find(|l| !seen.insert(l.as_str())) {
        return bad(format!("--layers: {l} is given twice"));
    }
    if opts.batch_size == 0 || opts.noise_draws == 0 || opts.resolution == 0 {
        return bad("--batch-size, --noise-draws and --resolution must be at least 1".into());
    }
    let (i, n) = opts.part;
    if n == 0 || i >= n {
        return bad(format!("--shard {}/{n}: expected i/n with 1 <= i <= n", i + 1));
    }
    if let Some(s) = opts.shard_size {
        if !s.is_power_of_two() || s > BLOCK {
            return bad(format!("--shard-size {s}: must be a power of two up to {BLOCK}, so shards tile the blocks"));
        }
    }
    if !opts.dtype.is_float() {
        return bad(format!("--dtype {}: features are stored as f32, f16 or bf16", opts.dtype));
    }
    if let Conditioning::Captions = opts.conditioning {
        if let Some(e) = ds.entries().iter().find(|e| e.caption.is_none()) {
            return bad(format!("--captions: image {} has no caption (give the dataset a caption column)", e.path));
        }
    }
    if let Conditioning::Clip { templates, .. } = &opts.conditioning {
        if ds.class_names().is_empty() {
            return bad("--prompt-from-clip needs the dataset's class names to fill the templates (it has only ids)".into());
        }
        for t in templates {
            check_template(t).map_err(|m| Error::BadOption(format!("--prompt-templates: {m}")))?;
        }
    }
    if let Conditioning::Prompt(p) = &opts.conditioning {
        if p.contains("{label}") && ds.class_names().is_empty() {
            return bad(format!("--prompt {p:?} uses {{label}} but the dataset has no class names (only ids)"));
        }
    }
    Ok(())
}

/// The model folder as the manifest records it: absolute, so that a rerun from another working
/// folder resumes.
fn model_path(p: &Path) -> String {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}

/// The manifest this run writes (everything that shapes the features).
fn manifest(opts: &ExtractOptions, ds: &Dataset, entries: &[ImageEntry], bb: &Pipeline, shard_size: usize) -> Manifest {
    let mut s = Map::new();
    s.insert("model_kind".into(), json!(bb.kind()));
    s.insert("resolution".into(), json!(opts.resolution));
    s.insert("noise_draws".into(), json!(opts.noise_draws));
    s.insert("posterior".into(), json!(if opts.posterior == Posterior::Mean { "mean" } else { "sample" }));
    s.insert("model_dtype".into(), json!(opts.model_dtype.name()));
    s.insert("shard_size".into(), json!(shard_size));
    super::dataset::record(ds, &opts.dataset_options, &mut s);
    if bb.is_dit() {
        s.insert("dit_noise".into(), json!(opts.dit_noise));
        s.insert("dit_class".into(), json!(if opts.dit_class == DitClass::Null { "null" } else { "label" }));
    } else {
        s.insert("conditioning".into(), json!(opts.conditioning.name()));
        if let Conditioning::Clip { model, .. } = &opts.conditioning {
            s.insert("clip_model".into(), json!(model_path(model)));
        }
    }
    if opts.part.1 > 1 {
        s.insert("part".into(), json!(format!("{}/{}", opts.part.0 + 1, opts.part.1)));
    }
    Manifest {
        format: STORE_FORMAT.into(),
        model: model_path(&opts.model),
        model_config_hash: bb.config_hash.clone(),
        layers: opts.layers.clone(),
        timesteps: opts.timesteps.clone(),
        pooling: opts.pooling.name(),
        dtype: opts.dtype.name().into(),
        seed: opts.seed,
        settings: s,
        images: entries.to_vec(),
        class_names: ds.class_names().to_vec(),
        feature_shapes: HashMap::new(),
        shards: vec![],
        failures: vec![],
    }
}

/// The latents of a block of images and which of them failed to load.
struct BlockLatents {
    start: usize,
    /// [n, L, h, w] f32, zeros for failed images.
    data: Vec<f32>,
    failures: Vec<Failure>,
}

/// The latent cache of a part: a feature store with one `latents` tensor per block.
fn cache_manifest(opts: &ExtractOptions, ds: &Dataset, bb: &Pipeline) -> Manifest {
    let mut s = Map::new();
    s.insert("resolution".into(), json!(opts.resolution));
    s.insert("posterior".into(), json!(if opts.posterior == Posterior::Mean { "mean" } else { "sample" }));
    s.insert("model_dtype".into(), json!(opts.model_dtype.name()));
    s.insert("vae".into(), json!(bb.vae.config().scaling_factor));
    Manifest {
        format: STORE_FORMAT.into(),
        model: model_path(&opts.model.join("vae")),
        model_config_hash: bb.config_hash.clone(),
        layers: vec!["latents".into()],
        timesteps: vec![0],
        pooling: Pooling::None.name(),
        dtype: DType::F32.name().into(),
        seed: if opts.posterior == Posterior::Sample { opts.seed } else { 0 },
        settings: s,
        images: ds.entries().to_vec(),
        class_names: vec![],
        feature_shapes: HashMap::new(),
        shards: vec![],
        failures: vec![],
    }
}

/// What one run holds while it works through its shards.
struct Run<'a> {
    opts: &'a ExtractOptions,
    ds: Arc<Dataset>,
    /// The dataset's entries, with the CLIP-chosen prompts of this part's images if asked.
    entries: Arc<Vec<ImageEntry>>,
    bb: Pipeline,
    requests: Vec<TapRequest>,
    /// [1, L, h, w]: the latent of one image, and its element count.
    latent_dims: Vec<usize>,
    latent_per: usize,
    dit_classes: Option<usize>,
}

impl Run<'_> {
    /// Latents [n, L, h, w] (host rows `start..start + n` of `lat`) as the model's input.
    fn latents(&self, lat: &BlockLatents, start: usize, n: usize) -> Result<Tensor> {
        let off = (start - lat.start) * self.latent_per;
        let mut dims = self.latent_dims.clone();
        dims[0] = n;
        ops::to_dtype(&Tensor::from_vec(lat.data[off..off + n * self.latent_per].to_vec(), dims, &Device::Cpu)?.to_device(self.bb.device())?, self.opts.model_dtype)
    }

    /// The noise of images `idx` at timestep t, draw d: [n, L, h, w] on the model's device.
    fn noise(&self, idx: &[usize], t: usize, d: usize) -> Result<Tensor> {
        let seed = self.opts.seed;
        let eps: Vec<f32> = idx
            .par_iter()
            .flat_map_iter(|&i| rng::normal_vec(rng::derive(seed, &[i as u64, t as u64, d as u64]), 0, self.latent_per))
            .collect();
        let mut dims = self.latent_dims.clone();
        dims[0] = idx.len();
        ops::to_dtype(&Tensor::from_vec(eps, dims, &Device::Cpu)?.to_device(self.bb.device())?, self.opts.model_dtype)
    }

    /// Pooled features of images `idx` for every (layer, timestep), in the order layer-major:
    /// `out[l * T + t]` holds [n, per-image...] rows, with their per-image shape.
    fn batch_features(&mut self, lat: &BlockLatents, idx: &[usize]) -> Result<Vec<(Vec<f32>, Vec<usize>)>> {
        let opts = self.opts;
        let n = idx.len();
        let x0 = self.latents(lat, idx[0], n)?;
        let (ds, all) = (self.ds.clone(), self.entries.clone());
        let entries: Vec<_> = idx.iter().map(|&i| &all[i]).collect();
        let (ctx, labels) = match self.dit_classes {
            Some(null) => (None, Some(opts.dit_class.labels(&entries, null)?)),
            None => (Some(opts.conditioning.encode(&mut self.bb, &entries, ds.class_names())?), None),
        };
        // DiT without --dit-noise sees the clean latent: one pass, no draws.
        let noised = !self.bb.is_dit() || opts.dit_noise;
        let draws = if noised { opts.noise_draws } else { 1 };
        let nt = opts.timesteps.len();
        let mut out: Vec<(Vec<f32>, Vec<usize>)> = vec![(Vec::new(), Vec::new()); self.requests.len() * nt];
        for (ti, &t) in opts.timesteps.iter().enumerate() {
            for d in 0..draws {
                let x = if noised { self.bb.ddim.add_noise(&x0, &self.noise(idx, t, d)?, &[t])? } else { x0.clone() };
                let vals = self.bb.record(&x, t, ctx.as_ref(), labels.as_ref(), &self.requests, idx)?;
                for (li, r) in self.requests.iter().enumerate() {
                    let v = vals.get(&r.name).ok_or_else(|| Error::Internal(format!("layer {} was not recorded", r.name)))?;
                    let (p, shape) = opts.pooling.apply(v)?;
                    let slot = &mut out[li * nt + ti];
                    if slot.0.is_empty() {
                        *slot = (p, shape);
                    } else {
                        slot.0.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
                    }
                }
            }
        }
        if draws > 1 {
            let inv = 1.0 / draws as f32;
            out.iter_mut().for_each(|(v, _)| v.iter_mut().for_each(|x| *x *= inv));
        }
        Ok(out)
    }
}

/// Extracts features as `opts` says; see the module docs. `progress`: show a bar or log lines.
pub fn extract(opts: &ExtractOptions, progress: bool) -> Result<ExtractSummary> {
    let t_start = Instant::now();
    // 1. the dataset, the models, and every check that can fail before any work
    let ds = Arc::new(Dataset::open(&opts.dataset, &opts.dataset_options)?);
    check(opts, &ds)?;
    let bb = Pipeline::load(&opts.model, opts.model_dtype, &opts.device)?;
    let requests = bb.resolve(&opts.layers)?;
    let steps = bb.ddim.alphas_cumprod().len();
    if let Some(&t) = opts.timesteps.iter().find(|&&t| t >= steps) {
        return Err(Error::BadOption(format!("--timesteps: {t} is out of range; the training schedule has {steps} steps (0..={})", steps - 1)));
    }
    let dit_classes = bb.dit_classes();
    if let (Some(classes), DitClass::Label) = (dit_classes, opts.dit_class) {
        if let Some(e) = ds.entries().iter().find(|e| e.label < 0 || e.label as usize >= classes) {
            return Err(Error::BadInput(format!("--dit-class label: image {} has label {}, DiT has classes 0..{classes}", e.path, e.label)));
        }
    }

    let out = part_dir(&opts.out, opts.part);
    let range = part_range(ds.len(), opts.part.0, opts.part.1, BLOCK);
    let entries = match &opts.conditioning {
        Conditioning::Clip { model, templates } => {
            if bb.is_dit() {
                return Err(Error::BadOption("--prompt-from-clip conditions Stable Diffusion; DiT takes class labels".into()));
            }
            // 1b. the prompt of each image of this part, before any feature (a resumed run reads
            //     them back from its manifest)
            let chooser = PromptChooser::new(model, templates, ds.class_names(), &opts.device).context("--prompt-from-clip")?;
            let known = if out.join(super::store::MANIFEST).exists() { Some(read_manifest(&out)?.images) } else { None };
            choose_prompts(&chooser, &ds, range.clone(), opts.batch_size, known.as_deref())?
        }
        _ => ds.entries().to_vec(),
    };

    // 2. probe one blank image: checks the resolution fits the models, sizes the shards
    let probe = Tensor::zeros([1, 3, opts.resolution, opts.resolution], DType::F32, &Device::Cpu)?;
    let latent_dims = bb.encode(&probe, Posterior::Mean, 0, &[0]).context("running the VAE at --resolution")?.dims().to_vec();
    let entries = Arc::new(entries);
    let mut run = Run { opts, ds: ds.clone(), entries: entries.clone(), bb, requests, latent_per: latent_dims[1..].iter().product(), latent_dims, dit_classes };
    let probe_lat = BlockLatents { start: 0, data: vec![0.0; run.latent_per], failures: Vec::new() };
    let per_image_bytes: usize = run
        .batch_features(&probe_lat, &[0])
        .context("running the model at --resolution")?
        .iter()
        .map(|(v, _)| v.len() * opts.dtype.size_in_bytes())
        .sum();
    let shard_size = opts.shard_size.unwrap_or_else(|| 1 << (SHARD_BYTES / per_image_bytes.max(1)).clamp(1, BLOCK).ilog2());

    // 3. the store (resumed if there), the shards still to do, the latent cache
    let mut writer = FeatureStoreWriter::create_or_resume(&out, manifest(opts, &ds, &entries, &run.bb, shard_size))?;
    let todo: Vec<(usize, usize)> = grid(range.clone(), shard_size).into_iter().filter(|&(s, c)| !writer.has_shard(s, c)).collect();
    let model_name = if run.bb.is_dit() { "DiT" } else { "U-Net" };
    let mut summary = ExtractSummary { out: out.clone(), images: range.len(), model_name, ..Default::default() };
    summary.already_done = range.len() - todo.iter().map(|s| s.1).sum::<usize>();
    let mut cache = match &opts.latent_cache {
        Some(dir) => Some(FeatureStoreWriter::create_or_resume(part_dir(dir, opts.part), cache_manifest(opts, &ds, &run.bb))?),
        None => None,
    };

    // 4. what to decode: whole blocks when caching (unless cached), else the shards to do;
    //    batches never cross a block, so each block's latents complete in order
    let mut plan = Vec::new();
    let mut decode: Vec<Vec<usize>> = Vec::new();
    for (bs, bc) in grid(range.clone(), BLOCK) {
        let mine: Vec<(usize, usize)> = todo.iter().copied().filter(|&(s, _)| s >= bs && s < bs + bc).collect();
        if mine.is_empty() {
            continue;
        }
        let cached = cache.as_ref().is_some_and(|c| c.has_shard(bs, bc));
        let images: Vec<usize> = match (&cache, cached) {
            (_, true) => Vec::new(),
            (Some(_), false) => (bs..bs + bc).collect(),
            (None, _) => mine.iter().flat_map(|&(s, c)| s..s + c).collect(),
        };
        decode.extend(images.chunks(opts.batch_size).map(|c| c.to_vec()));
        plan.push(((bs, bc), mine, cached, images.len()));
    }
    let mut prefetch = Prefetcher::new(ds.clone(), decode, Preprocess::Eval { resolution: opts.resolution }, 4, opts.workers)?;
    let mut bar = progress.then(|| {
        let mut p = Progress::new("extract", range.len() as u64, "img");
        p.set_position(summary.already_done as u64);
        p
    });

    'blocks: for ((bs, bc), mine, cached, to_decode) in plan {
        // 5. the block's latents: from the cache, or decoded and encoded now
        let mut lat = BlockLatents { start: bs, data: vec![0.0; bc * run.latent_per], failures: Vec::new() };
        let t0 = Instant::now();
        if cached {
            let c = cache.as_ref().expect("cached implies a cache");
            lat.data = c.read_shard(bs, bc, "latents", 0)?.to_f32_vec()?;
            lat.failures = c.manifest().failures.iter().filter(|f| f.index >= bs && f.index < bs + bc).cloned().collect();
        }
        let mut got = 0;
        while got < to_decode {
            let batch = prefetch.next().ok_or_else(|| Error::Internal("the decode pipeline ended early".into()))??;
            summary.decode += batch.decode_time;
            let z = run.bb.encode(&batch.images, opts.posterior, opts.seed, &batch.indices)?.to_f32_vec()?;
            let failed: HashSet<usize> = batch.failures.iter().map(|f| f.index).collect();
            let per = run.latent_per;
            for (k, &i) in batch.indices.iter().enumerate().filter(|(_, i)| !failed.contains(i)) {
                lat.data[(i - bs) * per..(i - bs + 1) * per].copy_from_slice(&z[k * per..(k + 1) * per]);
            }
            lat.failures.extend(batch.failures);
            got += batch.indices.len();
        }
        summary.vae += t0.elapsed();
        if let (Some(c), false) = (cache.as_mut(), cached) {
            let t0 = Instant::now();
            let mut dims = run.latent_dims.clone();
            dims[0] = bc;
            c.write_shard(bs, bc, &[(("latents".into(), 0), Tensor::from_vec(lat.data.clone(), dims, &Device::Cpu)?)], &lat.failures)?;
            summary.write += t0.elapsed();
        }

        for (s, c) in mine {
            // 6. the features of each shard still to do, batch by batch
            let t0 = Instant::now();
            let mut acc: Vec<(Vec<f32>, Vec<usize>)> = Vec::new();
            for b0 in (s..s + c).step_by(opts.batch_size) {
                let idx: Vec<usize> = (b0..(b0 + opts.batch_size).min(s + c)).collect();
                let feats = run.batch_features(&lat, &idx)?;
                if acc.is_empty() {
                    acc = feats;
                } else {
                    acc.iter_mut().zip(feats).for_each(|(a, f)| a.0.extend(f.0));
                }
                summary.processed += idx.len();
                if let Some(p) = bar.as_mut() {
                    p.inc(idx.len() as u64);
                }
            }
            summary.model += t0.elapsed();
            // 7. write the shard, failed images' rows zeroed
            let t0 = Instant::now();
            let fails: Vec<Failure> = lat.failures.iter().filter(|f| f.index >= s && f.index < s + c).cloned().collect();
            let nt = opts.timesteps.len();
            let mut features = Vec::with_capacity(acc.len());
            for (k, (mut v, shape)) in acc.into_iter().enumerate() {
                let per: usize = shape.iter().product();
                for f in &fails {
                    v[(f.index - s) * per..(f.index - s + 1) * per].fill(0.0);
                }
                let dims: Vec<usize> = std::iter::once(c).chain(shape).collect();
                let t = ops::to_dtype(&Tensor::from_vec(v, dims, &Device::Cpu)?, opts.dtype)?;
                features.push(((opts.layers[k / nt].clone(), opts.timesteps[k % nt]), t));
            }
            summary.failures += fails.len();
            writer.write_shard(s, c, &features, &fails).with_context(|| format!("writing the shard of images {s}..{} to {}", s + c, out.display()))?;
            summary.write += t0.elapsed();
            summary.shards_written += 1;
            if opts.max_shards.is_some_and(|m| summary.shards_written >= m) {
                summary.stopped = summary.shards_written < todo.len();
                break 'blocks;
            }
        }
    }
    summary.decode_wait = prefetch.waited();
    drop(prefetch);
    if let Some(p) = bar {
        p.finish();
    }
    summary.elapsed = t_start.elapsed();
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_whole_blocks_covering_everything() {
        for (n_img, parts) in [(1000, 3), (100, 4), (256 * 5 + 1, 2), (0, 2)] {
            let mut next = 0;
            for i in 0..parts {
                let r = part_range(n_img, i, parts, BLOCK);
                assert_eq!(r.start, next);
                assert!(r.start.is_multiple_of(BLOCK) || r.start == n_img);
                next = r.end;
            }
            assert_eq!(next, n_img);
        }
    }

    #[test]
    fn grid_aligns_to_multiples() {
        assert_eq!(grid(256..600, 128), [(256, 128), (384, 128), (512, 88)]);
        assert_eq!(grid(0..3, 4), [(0, 3)]);
    }
}
