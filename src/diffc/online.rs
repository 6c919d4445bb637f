//! Diff-C's online features: the reference's protocol (shared/spec/revelio.md sections 1b and 3,
//! `DiffusionVisionTower.extract_raw_features` called from `train.py`). Nothing is cached; the
//! features of every image are recomputed each time the trainer asks for them:
//!
//! 1. Train images: `RandomResizedCrop(R, scale (0.8, 1), ratio (3/4, 4/3))` and
//!    `RandomHorizontalFlip(0.5)` ([`Preprocess::Augment`]). Test images: `Resize(R)` and
//!    `CenterCrop(R)` ([`Preprocess::Eval`]). R = 512 by default, as the reference.
//! 2. The VAE encoder: latents = scaling_factor * posterior mean.
//! 3. `add_noise` at the timestep with noise drawn for this image (below).
//! 4. The U-Net on the empty prompt (or a prompt template, or captions), stopping after the
//!    tapped block; its output map [C, h, w] is the image's feature. DiT pipelines work too, with
//!    extract's conventions (clean latent and the null class unless asked otherwise).
//!
//! Random draws. The reference draws augmentation and noise from torch's unseeded global
//! generator, so its runs cannot be repeated. Ours come from the counter-based generator, keyed
//! so that a draw depends only on (seed, epoch, image): not on batch size, order, worker or
//! device, and a resumed run sees what an uninterrupted one would have.
//! - Train image i in epoch e: crop from `derive(s, [e, i, 0])`, flip from `derive(s, [e, i, 1])`
//!   (that is `Preprocess::Augment { seed: s, epoch: e }`) and noise from `derive(s, [e, i, 2])`,
//!   with `s = derive(seed, [TRAIN_STREAM])`.
//! - Test image i ([`TestNoise`]): `epoch` (the default, like the reference: fresh noise every
//!   evaluation) draws from `derive(derive(seed, [TEST_STREAM]), [e, i])`; `fixed` draws from
//!   `derive(seed, [i, t, 0])`, the noise `revelio extract --seed SEED` gives image i of the test
//!   split at timestep t, so the test features are the same every epoch and equal to the ones
//!   extract stores.
//!
//! Noise values are `rng::normal` over the latent in CHW order, as extract's.
//!
//! The trainer asks for one batch at a time. The source knows the order it asks in (the seeded
//! shuffle of `train::shuffle`, then the test split in order, epoch after epoch), so a thread
//! reads, decodes and augments the coming batches on a pool of its own while the model runs;
//! a request off that plan is served directly, with the same result. The models run on the
//! trainer's device in `model_dtype`; the features are cast to the classifier's dtype.

use super::data::{check_layout, FeatureSource, Split, TokenLayout};
use super::train::shuffle;
use crate::features::conditioning::{Conditioning, DitClass};
use crate::features::dataset::{Dataset, DatasetFormat, DatasetOptions};
use crate::features::hf_parquet::Columns;
use crate::features::image::Preprocess;
use crate::features::prefetch::{load_batch, Batch};
use crate::features::store::ImageEntry;
use crate::models::pipeline::{Pipeline, Posterior};
use crate::models::taps::TapRequest;
use crate::tensor::{DType, Device, Tensor};
use crate::{ops, rng, Context, Error, Result};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Streams of the run's seed the online source draws from (the trainer uses 0, 1 and 2).
pub const TRAIN_STREAM: u64 = 3;
pub const TEST_STREAM: u64 = 4;

/// Sub-stream of a train image's (epoch, image) draws that its noise comes from (0 and 1 are the
/// crop and the flip of `Preprocess::Augment`).
const NOISE_SUBSTREAM: u64 = 2;

/// The file in the run folder that `revelio diffc train --online` writes the loop's figures to.
pub const ONLINE_REPORT: &str = "online.json";

/// Batches decoded ahead of the trainer.
const DEPTH: usize = 4;

/// How test images are noised (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestNoise {
    /// Fresh noise every epoch, seeded per (seed, test, epoch, image): the reference's protocol.
    Epoch,
    /// The same noise every epoch: `revelio extract`'s noise for the image at the timestep.
    Fixed,
}

impl TestNoise {
    pub fn parse(s: &str) -> Result<TestNoise> {
        match s {
            "epoch" => Ok(TestNoise::Epoch),
            "fixed" => Ok(TestNoise::Fixed),
            _ => Err(Error::BadOption(format!("--test-noise {s}: expected epoch (fresh each epoch, the reference) or fixed"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TestNoise::Epoch => "epoch",
            TestNoise::Fixed => "fixed",
        }
    }
}

/// The augmentation of the train split in `epoch`.
pub fn train_preprocess(resolution: usize, seed: u64, epoch: usize) -> Preprocess {
    Preprocess::Augment { resolution, seed: rng::derive(seed, &[TRAIN_STREAM]), epoch: epoch as u64 }
}

/// The noise stream of train image `image` in `epoch`.
pub fn train_noise_seed(seed: u64, epoch: usize, image: usize) -> u64 {
    rng::derive(rng::derive(seed, &[TRAIN_STREAM]), &[epoch as u64, image as u64, NOISE_SUBSTREAM])
}

/// The noise stream of test image `image` in `epoch` at timestep `t`.
pub fn test_noise_seed(mode: TestNoise, seed: u64, epoch: usize, image: usize, t: usize) -> u64 {
    match mode {
        TestNoise::Epoch => rng::derive(rng::derive(seed, &[TEST_STREAM]), &[epoch as u64, image as u64]),
        TestNoise::Fixed => rng::derive(seed, &[image as u64, t as u64, 0]),
    }
}

/// The order the trainer asks for batches in: used only to decode ahead, so values that differ
/// from the trainer's cost overlap, never correctness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPlan {
    pub batch_size: usize,
    pub test_batch_size: usize,
    pub epochs: usize,
}

/// Errors unless the model of `opts` has every layer of `layers` and every timestep of
/// `timesteps` (a sweep's check before its first run; it loads the model once).
pub fn check_layers(opts: &OnlineOptions, layers: &[String], timesteps: &[usize]) -> Result<()> {
    let bb = Pipeline::load(&opts.model, opts.model_dtype, &opts.device)?;
    bb.resolve(layers)?;
    let steps = bb.ddim.alphas_cumprod().len();
    match timesteps.iter().find(|&&t| t >= steps) {
        Some(t) => Err(Error::BadOption(format!("diffc online: --timesteps {t} is out of range; the training schedule has {steps} steps (0..={})", steps - 1))),
        None => Ok(()),
    }
}

/// Everything the online source takes.
#[derive(Debug, Clone)]
pub struct OnlineOptions {
    /// A diffusers pipeline folder (Stable Diffusion or DiT).
    pub model: PathBuf,
    /// The images: ImageFolder root with `<train_split>/` and `<test_split>/` folders of
    /// `<class>/<image>`, a CSV/JSONL manifest with a split column, or HF parquet files.
    pub dataset: PathBuf,
    /// `None`: found from the path.
    pub format: Option<DatasetFormat>,
    pub columns: Columns,
    pub train_split: String,
    pub test_split: String,
    pub layer: String,
    pub timestep: usize,
    pub resolution: usize,
    /// The dtype the VAE and U-Net run in.
    pub model_dtype: DType,
    pub device: Device,
    /// The run's seed (the trainer's `--seed`).
    pub seed: u64,
    pub conditioning: Conditioning,
    pub test_noise: TestNoise,
    /// DiT: add noise at the timestep (the reference feeds the clean latent).
    pub dit_noise: bool,
    pub dit_class: DitClass,
    /// DiT: how block tokens become the classifier's map.
    pub token_layout: TokenLayout,
    /// Decode threads (all cores when `None`).
    pub workers: Option<usize>,
    pub plan: BatchPlan,
}

/// Where the online source spent its time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OnlineStats {
    pub train_images: usize,
    pub test_images: usize,
    /// Reading, decoding and augmenting, on the pool (overlapped with the models).
    pub decode_s: f64,
    /// Time the trainer waited for decoded batches (the pool not keeping up).
    pub decode_wait_s: f64,
    pub vae_s: f64,
    /// Drawing the noise, add_noise and the conditioning.
    pub noise_s: f64,
    /// The U-Net (or DiT) up to the layer.
    pub model_s: f64,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn index(split: Split) -> usize {
    match split {
        Split::Train => 0,
        Split::Test => 1,
    }
}

/// A shuffled epoch and where each image sits in it.
struct EpochOrder {
    epoch: usize,
    order: Vec<usize>,
    position: Vec<usize>,
}

/// The trainer's sequence of batches: for each epoch, the train split's shuffled chunks, then
/// the test split's chunks in order. Position p numbers them from the first batch of epoch 0.
#[derive(Clone)]
struct Plan {
    seed: u64,
    resolution: usize,
    images: [usize; 2],
    batch: [usize; 2],
    epochs: usize,
}

impl Plan {
    fn batches(&self, s: usize) -> usize {
        self.images[s].div_ceil(self.batch[s])
    }

    fn per_epoch(&self) -> usize {
        self.batches(0) + self.batches(1)
    }

    fn len(&self) -> usize {
        self.epochs * self.per_epoch()
    }

    fn order<'a>(&self, cache: &'a mut Option<EpochOrder>, epoch: usize) -> &'a EpochOrder {
        if cache.as_ref().is_none_or(|o| o.epoch != epoch) {
            let order = shuffle(self.images[0], self.seed, epoch);
            let mut position = vec![0; order.len()];
            for (p, &i) in order.iter().enumerate() {
                position[i] = p;
            }
            *cache = Some(EpochOrder { epoch, order, position });
        }
        cache.as_ref().expect("filled above")
    }

    /// The batch at position `p`.
    fn at(&self, p: usize, cache: &mut Option<EpochOrder>) -> (Split, usize, Vec<usize>) {
        let (epoch, mut k) = (p / self.per_epoch(), p % self.per_epoch());
        let (split, n, b) = if k < self.batches(0) {
            (Split::Train, self.images[0], self.batch[0])
        } else {
            k -= self.batches(0);
            (Split::Test, self.images[1], self.batch[1])
        };
        let range = k * b..((k + 1) * b).min(n);
        let items = match split {
            Split::Train => self.order(cache, epoch).order[range].to_vec(),
            Split::Test => range.collect(),
        };
        (split, epoch, items)
    }

    /// The position of a request, if it is one of the plan's batches.
    fn locate(&self, split: Split, epoch: usize, items: &[usize], cache: &mut Option<EpochOrder>) -> Option<usize> {
        let s = index(split);
        let (&first, b) = (items.first()?, self.batch[s]);
        if epoch >= self.epochs || first >= self.images[s] {
            return None;
        }
        let start = match split {
            Split::Train => self.order(cache, epoch).position[first],
            Split::Test => first,
        };
        if start % b != 0 || items.len() != b.min(self.images[s] - start) {
            return None;
        }
        let k = start / b;
        let p = epoch * self.per_epoch() + if s == 0 { k } else { self.batches(0) + k };
        let same = match split {
            Split::Train => self.order(cache, epoch).order[start..start + items.len()] == *items,
            Split::Test => items.iter().enumerate().all(|(j, &i)| i == start + j),
        };
        same.then_some(p)
    }

    fn preprocess(&self, split: Split, epoch: usize) -> Preprocess {
        match split {
            Split::Train => train_preprocess(self.resolution, self.seed, epoch),
            Split::Test => Preprocess::Eval { resolution: self.resolution },
        }
    }
}

/// The decode thread: batches from position `next` on, `DEPTH` ahead of the trainer.
struct Ahead {
    rx: Option<Receiver<(usize, Result<Batch>)>>,
    worker: Option<JoinHandle<()>>,
    next: usize,
}

impl Ahead {
    fn start(plan: Plan, data: [Arc<Dataset>; 2], pool: Arc<rayon::ThreadPool>, start: usize) -> Result<Ahead> {
        let (tx, rx) = sync_channel(DEPTH);
        let worker = std::thread::Builder::new()
            .name("revelio-diffc-decode".into())
            .spawn(move || {
                let mut cache = None;
                for p in start..plan.len() {
                    let (split, epoch, items) = plan.at(p, &mut cache);
                    let pre = plan.preprocess(split, epoch);
                    let batch = pool.install(|| load_batch(&data[index(split)], &items, &pre));
                    // The source hung up (a new plan position, or the run ended): stop.
                    if tx.send((p, batch)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("diffc online: cannot start the decode thread: {e}")))?;
        Ok(Ahead { rx: Some(rx), worker: Some(worker), next: start })
    }

    /// The batch at position `p` (>= `next`), dropping the ones before it.
    fn take(&mut self, p: usize) -> Result<Batch> {
        let rx = self.rx.as_ref().expect("taken only in drop");
        loop {
            let (q, batch) = rx.recv().map_err(|_| Error::Internal("diffc online: the decode thread stopped early".into()))?;
            self.next = q + 1;
            if q == p {
                return batch;
            }
        }
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        // Hanging up first lets a thread blocked on a full channel finish.
        drop(self.rx.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Opens split `name` of the dataset: for an ImageFolder the folder `root/<name>/`, else the
/// rows whose split is `name`.
fn open_split(opts: &OnlineOptions, format: DatasetFormat, name: &str, what: &str) -> Result<Dataset> {
    let flag = format!("--{what}-split");
    let root = &opts.dataset;
    if format != DatasetFormat::ImageFolder {
        let dopts = DatasetOptions { format: Some(format), split: Some(name.into()), columns: opts.columns.clone() };
        return Dataset::open(root, &dopts).with_context(|| {
            format!("online Diff-C trains on the dataset's own splits: {flag} {name} names the {what} split")
        });
    }
    let dir = root.join(name);
    if !dir.is_dir() {
        let mut folders: Vec<String> = std::fs::read_dir(root)
            .map_err(|e| Error::io(root, e))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        folders.sort();
        let flat = !root.join(&opts.train_split).is_dir() && !root.join(&opts.test_split).is_dir();
        return Err(Error::BadOption(format!(
            "dataset {}: an ImageFolder with no `{name}` split ({flag} {name}): online Diff-C reads {}/<class>/<image> for \
             training and {}/<class>/<image> for testing; the folders there are [{}]{}",
            root.display(),
            opts.train_split,
            opts.test_split,
            folders.join(", "),
            if flat { " (a flat root/<class>/<image> tree has no splits: move its images into those two folders)" } else { "" }
        )));
    }
    Dataset::image_folder(&dir)
}

/// Features computed on the fly every epoch (see the module docs).
pub struct OnlineSource {
    opts: OnlineOptions,
    bb: Pipeline,
    request: TapRequest,
    data: [Arc<Dataset>; 2],
    labels: [Vec<i64>; 2],
    class_names: Vec<String>,
    /// [C, h, w] of the layer's map, and [L, h, w] of a latent.
    shape: [usize; 3],
    latent: Vec<usize>,
    describe: serde_json::Value,
    plan: Plan,
    pool: Arc<rayon::ThreadPool>,
    ahead: Option<Ahead>,
    orders: Option<EpochOrder>,
    stats: OnlineStats,
}

impl OnlineSource {
    /// Opens both splits and the pipeline, and runs one blank image through it to learn the
    /// feature shape. Errors name what is wrong: a missing split, an unknown layer (listing the
    /// model's), a timestep out of range, a resolution the models cannot take.
    pub fn open(opts: &OnlineOptions) -> Result<OnlineSource> {
        let bad = |m: String| Err(Error::BadOption(format!("diffc online: {m}")));
        if opts.resolution == 0 {
            return bad("--resolution must be at least 1".into());
        }
        if opts.plan.batch_size == 0 || opts.plan.test_batch_size == 0 {
            return bad("batch sizes must be at least 1".into());
        }
        if opts.train_split == opts.test_split {
            return bad(format!("--train-split and --test-split are both `{}`", opts.train_split));
        }
        if opts.model_dtype != DType::F32 && opts.device.is_cpu() {
            return bad(format!("--model-dtype {}: the CPU backend computes in f32", opts.model_dtype));
        }
        // 1. the splits
        let format = match opts.format {
            Some(f) => f,
            None => Dataset::detect(&opts.dataset)?,
        };
        let train = open_split(opts, format, &opts.train_split, "train")?;
        let test = open_split(opts, format, &opts.test_split, "test")?;
        let class_names = if train.class_names().is_empty() { test.class_names().to_vec() } else { train.class_names().to_vec() };
        if !test.class_names().is_empty() && test.class_names() != class_names.as_slice() {
            return bad(format!(
                "the splits name different classes: {} has [{}], {} has [{}]; both need the same class list",
                opts.train_split,
                class_names.join(", "),
                opts.test_split,
                test.class_names().join(", ")
            ));
        }
        for ds in [&train, &test] {
            if let Conditioning::Captions = opts.conditioning {
                if let Some(e) = ds.entries().iter().find(|e| e.caption.is_none()) {
                    return bad(format!("--captions: image {} has no caption (give the dataset a caption column)", e.path));
                }
            }
        }
        if let Conditioning::Prompt(p) = &opts.conditioning {
            if p.contains("{label}") && class_names.is_empty() {
                return bad(format!("--prompt {p:?} uses {{label}} but the dataset has no class names (only ids)"));
            }
        }

        // 2. the models, the layer, the timestep
        let bb = Pipeline::load(&opts.model, opts.model_dtype, &opts.device)?;
        let request = bb.resolve(std::slice::from_ref(&opts.layer))?.remove(0);
        check_layout(opts.token_layout, bb.kind(), &format!("the features of {}", opts.model.display()))?;
        let steps = bb.ddim.alphas_cumprod().len();
        if opts.timestep >= steps {
            return bad(format!("--timestep {} is out of range; the training schedule has {steps} steps (0..={})", opts.timestep, steps - 1));
        }
        if let (Some(classes), DitClass::Label) = (bb.dit_classes(), opts.dit_class) {
            for ds in [&train, &test] {
                if let Some(e) = ds.entries().iter().find(|e| e.label < 0 || e.label as usize >= classes) {
                    return bad(format!("--dit-class label: image {} has label {}, DiT has classes 0..{classes}", e.path, e.label));
                }
            }
        }

        let mut pool = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("revelio-diffc-decode-{i}"));
        if let Some(n) = opts.workers {
            pool = pool.num_threads(n.max(1));
        }
        let pool = Arc::new(pool.build().map_err(|e| Error::Internal(format!("diffc online: cannot start the decode pool: {e}")))?);
        let labels = [train.entries().iter().map(|e| e.label).collect(), test.entries().iter().map(|e| e.label).collect()];
        let plan = Plan {
            seed: opts.seed,
            resolution: opts.resolution,
            images: [train.len(), test.len()],
            batch: [opts.plan.batch_size, opts.plan.test_batch_size],
            epochs: opts.plan.epochs,
        };
        let mut describe = json!({
            "kind": "online",
            "model": std::fs::canonicalize(&opts.model).unwrap_or_else(|_| opts.model.clone()).display().to_string(),
            "model_config_hash": bb.config_hash,
            "model_kind": bb.kind(),
            "model_dtype": opts.model_dtype.name(),
            "dataset": std::fs::canonicalize(&opts.dataset).unwrap_or_else(|_| opts.dataset.clone()).display().to_string(),
            "dataset_format": format.name(),
            "train_split": opts.train_split,
            "test_split": opts.test_split,
            "layer": opts.layer,
            "timestep": opts.timestep,
            "resolution": opts.resolution,
            "train_preprocess": "RandomResizedCrop(scale 0.8-1, ratio 3/4-4/3) + RandomHorizontalFlip(0.5)",
            "test_preprocess": "Resize + CenterCrop",
            "posterior": "mean",
            "conditioning": if bb.is_dit() { json!(null) } else { json!(opts.conditioning.name()) },
            "test_noise": opts.test_noise.name(),
            "dit_noise": bb.is_dit().then_some(opts.dit_noise),
            "dit_class": bb.is_dit().then_some(if opts.dit_class == DitClass::Null { "null" } else { "label" }),
            "train_images": train.len(),
            "test_images": test.len(),
        });
        opts.token_layout.describe_in(&mut describe);
        let mut src = OnlineSource {
            opts: opts.clone(),
            bb,
            request,
            data: [Arc::new(train), Arc::new(test)],
            labels,
            class_names,
            shape: [0; 3],
            latent: Vec::new(),
            describe,
            plan,
            pool,
            ahead: None,
            orders: None,
            stats: OnlineStats::default(),
        };

        // 3. one blank image through the pipeline: the resolution fits, and the shapes
        let probe = Tensor::zeros([1, 3, opts.resolution, opts.resolution], DType::F32, &Device::Cpu)?;
        let z = src.bb.encode(&probe, Posterior::Mean, 0, &[0]).context("running the VAE at --resolution")?;
        src.latent = z.dims()[1..].to_vec();
        let f = src.model_features(Split::Train, 0, &[0], &z).context("running the model at --resolution")?;
        match *f.dims() {
            [_, c, h, w] => src.shape = [c, h, w],
            ref d => return bad(format!("layer `{}` gives {d:?}, not a feature map [B, C, h, w]", opts.layer)),
        }
        src.stats = OnlineStats::default();
        Ok(src)
    }

    /// Time and image counts so far.
    pub fn stats(&self) -> &OnlineStats {
        &self.stats
    }

    /// The pipeline's name for reports: "U-Net" or "DiT".
    pub fn model_name(&self) -> &'static str {
        if self.bb.is_dit() {
            "DiT"
        } else {
            "U-Net"
        }
    }

    /// The decoded images of a request: from the decode thread when the request is on the plan
    /// (restarting it at the request when it is not where the thread is), else decoded now.
    fn fetch(&mut self, split: Split, epoch: usize, items: &[usize]) -> Result<Batch> {
        let t0 = Instant::now();
        let batch = match self.plan.locate(split, epoch, items, &mut self.orders) {
            Some(p) => {
                let near = self.ahead.as_ref().is_some_and(|a| a.next <= p && p < a.next + 2 * DEPTH);
                if !near {
                    self.ahead = None;
                    self.ahead = Some(Ahead::start(self.plan.clone(), self.data.clone(), self.pool.clone(), p)?);
                }
                self.ahead.as_mut().expect("started above").take(p)?
            }
            None => {
                let pre = self.plan.preprocess(split, epoch);
                let ds = &self.data[index(split)];
                self.pool.install(|| load_batch(ds, items, &pre))?
            }
        };
        self.stats.decode_wait_s += secs(t0.elapsed());
        self.stats.decode_s += secs(batch.decode_time);
        if let Some(f) = batch.failures.first() {
            return Err(Error::BadInput(format!(
                "diffc online: image {} of the {} split ({}) cannot be read: {}; online training needs every image, so \
                 remove or fix it (`revelio extract` lists every unreadable image of a dataset in its manifest)",
                f.path,
                split.name(),
                self.data[index(split)].root().display(),
                f.error
            )));
        }
        Ok(batch)
    }

    /// The noise of `items` of `split` in `epoch`: [n, L, h, w] f32 on the host.
    fn noise(&self, split: Split, epoch: usize, items: &[usize]) -> Result<Tensor> {
        let per: usize = self.latent.iter().product();
        let (seed, t, mode) = (self.opts.seed, self.opts.timestep, self.opts.test_noise);
        let eps: Vec<f32> = items
            .par_iter()
            .flat_map_iter(|&i| {
                let s = match split {
                    Split::Train => train_noise_seed(seed, epoch, i),
                    Split::Test => test_noise_seed(mode, seed, epoch, i, t),
                };
                rng::normal_vec(s, 0, per)
            })
            .collect();
        let dims: Vec<usize> = std::iter::once(items.len()).chain(self.latent.iter().copied()).collect();
        Tensor::from_vec(eps, dims, &Device::Cpu)
    }

    /// Latents z [n, L, h, w] (f32, host) of `items` -> the layer's maps [n, C, h', w'] in the
    /// model's dtype on its device.
    fn model_features(&mut self, split: Split, epoch: usize, items: &[usize], z: &Tensor) -> Result<Tensor> {
        let t0 = Instant::now();
        let (dtype, t) = (self.opts.model_dtype, self.opts.timestep);
        let dev = self.bb.device().clone();
        let x0 = ops::to_dtype(&z.to_device(&dev)?, dtype)?;
        let x = if !self.bb.is_dit() || self.opts.dit_noise {
            let eps = ops::to_dtype(&self.noise(split, epoch, items)?.to_device(&dev)?, dtype)?;
            self.bb.ddim.add_noise(&x0, &eps, &[t])?
        } else {
            x0
        };
        let ds = self.data[index(split)].clone();
        let entries: Vec<&ImageEntry> = items.iter().map(|&i| &ds.entries()[i]).collect();
        let (ctx, labels) = match self.bb.dit_classes() {
            Some(null) => (None, Some(self.opts.dit_class.labels(&entries, null)?)),
            None => (Some(self.opts.conditioning.encode(&mut self.bb, &entries, &self.class_names)?), None),
        };
        self.stats.noise_s += secs(t0.elapsed());
        let t0 = Instant::now();
        let mut vals = self.bb.record(&x, t, ctx.as_ref(), labels.as_ref(), std::slice::from_ref(&self.request), items)?;
        let f = vals.remove(&self.request.name).ok_or_else(|| Error::Internal(format!("layer {} was not recorded", self.request.name)))?;
        let f = self.opts.token_layout.apply(f)?;
        dev.synchronize()?;
        self.stats.model_s += secs(t0.elapsed());
        Ok(f)
    }
}

impl FeatureSource for OnlineSource {
    fn describe(&self) -> serde_json::Value {
        self.describe.clone()
    }

    fn feature_shape(&self) -> [usize; 3] {
        self.shape
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }

    fn labels(&self, split: Split) -> &[i64] {
        &self.labels[index(split)]
    }

    fn features(&mut self, split: Split, epoch: usize, items: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let n = self.labels[index(split)].len();
        if let Some(&bad) = items.iter().find(|&&i| i >= n) {
            return Err(Error::Internal(format!("item {bad} is out of range for the {} split of {n} images", split.name())));
        }
        if items.is_empty() {
            let [c, h, w] = self.shape;
            return Tensor::zeros([0, c, h, w], dtype, device);
        }
        let batch = self.fetch(split, epoch, items)?;
        let t0 = Instant::now();
        let z = self.bb.encode(&batch.images, Posterior::Mean, 0, items)?;
        self.stats.vae_s += secs(t0.elapsed());
        let f = self.model_features(split, epoch, items, &z)?;
        match split {
            Split::Train => self.stats.train_images += items.len(),
            Split::Test => self.stats.test_images += items.len(),
        }
        ops::to_dtype(&f, dtype)?.to_device(device)
    }
}

/// The report of an online run: `stats` over `wall` seconds of training (features and the
/// classifier), as printed and as written to `online.json`.
pub fn report(stats: &OnlineStats, wall: Duration, model_name: &str) -> (String, serde_json::Value) {
    let images = stats.train_images + stats.test_images;
    let wall_s = secs(wall);
    let per_s = images as f64 / wall_s.max(1e-9);
    let rest = (wall_s - stats.decode_wait_s - stats.vae_s - stats.noise_s - stats.model_s).max(0.0);
    let text = format!(
        "diffc online: {images} images ({} train, {} test) in {wall_s:.1} s: {per_s:.2} img/s for the whole loop\n\
         time: decode {:.1} s on the pool (the loop waited {:.1} s for it), VAE {:.1} s, noise and conditioning {:.1} s, \
         {model_name} {:.1} s, classifier and the rest {rest:.1} s",
        stats.train_images, stats.test_images, stats.decode_s, stats.decode_wait_s, stats.vae_s, stats.noise_s, stats.model_s
    );
    let mut v = serde_json::to_value(stats).expect("JSON");
    v["wall_s"] = json!(wall_s);
    v["images_per_s"] = json!(per_s);
    v["classifier_and_rest_s"] = json!(rest);
    v["model"] = json!(model_name);
    (text, v)
}
