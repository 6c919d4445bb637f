//! `revelio generate`: text-to-image DDIM sampling with classifier-free guidance over a list of
//! prompts, the images written as PNGs (their settings in text chunks), a JSONL index and a
//! contact sheet, and, if asked, activations collected at chosen taps, steps and branches into
//! a feature store as the run goes.
//!
//! Samples: prompt p's k-th image is sample p * images_per_prompt + k; its initial latent is a
//! function of (seed, sample) alone (src/models/pipeline.rs), or row `sample` of
//! `--init-latents`. Work is laid on a fixed grid, as `revelio extract` lays it: `--shard i/n`
//! gives part i whole blocks of 64 samples; a part's samples are cut into store shards (a power
//! of two up to 64, aligned), batches never cross a shard, and a shard is recorded as done (in the
//! store's manifest) only once its images, latents, features and index lines are all written.
//! So a rerun resumes at the first shard not done, and every batch holds the same samples
//! whatever the part, the interruption or the rerun.
//!
//! The run folder (`--out`): `images/NNNNNN.png` and `latents/NNNNNN.safetensors` (initial and
//! final latents, `--save-latents`), shared by the parts of a sharded run; the store folder (the
//! run folder, or `part-I-of-N/` in it) holds the feature store (`manifest.json`: every sample
//! with its prompt, the settings; one shard file per store shard with the collected features)
//! and `index.jsonl` (one line per image); `contact.png` (or `contact-part-I-of-N.png`).
//! `revelio features merge` joins the parts' stores and indexes.

use super::collect::{layer_name, Collect, Collector};
use super::extract::{grid, part_dir, part_range};
use super::image::RgbImage;
use super::png;
use super::prompts::Prompt;
use super::store::{FeatureStoreWriter, ImageEntry, Manifest, MANIFEST, STORE_FORMAT};
use crate::io::{save_safetensors, write_atomic, SafeTensorsFile};
use crate::models::hooks::Branch;
use crate::models::pipeline::{initial_latents, Pipeline, Sampling};
use crate::models::taps::{TapRequest, Taps};
use crate::progress::Progress;
use crate::tensor::{DType, Device, Tensor};
use crate::{ops, Context, Error, Result};
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest automatic store shard, in bytes of features.
const SHARD_BYTES: usize = 256 << 20;
/// Samples per block, the unit of `--shard i/n` parts and the largest store shard (the unit
/// of resuming).
const BLOCK: usize = 64;
/// Images on the contact sheet, and the long side of each.
const CONTACT_IMAGES: usize = 64;
const CONTACT_CELL: usize = 128;
/// The run's index of images, in each store folder.
pub const INDEX: &str = "index.jsonl";

/// Everything `revelio generate` takes.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// A diffusers Stable Diffusion pipeline folder.
    pub model: PathBuf,
    pub prompts: Vec<Prompt>,
    /// Where the prompts came from (recorded in the manifest).
    pub prompts_source: String,
    /// The negative prompt of prompts without their own ("": the empty prompt, diffusers').
    pub negative_prompt: String,
    pub images_per_prompt: usize,
    pub sampling: Sampling,
    pub height: usize,
    pub width: usize,
    pub batch_size: usize,
    pub model_dtype: DType,
    pub device: Device,
    pub out: PathBuf,
    /// (i, n): part i (0-based) of n.
    pub part: (usize, usize),
    /// Initial latents: a safetensors file of [N, L, h, w], or a folder of per-sample files as
    /// `--save-latents` writes them.
    pub init_latents: Option<PathBuf>,
    pub save_latents: bool,
    pub write_images: bool,
    pub collect: Option<Collect>,
    /// Samples per store shard (a power of two up to 64); None: chosen by size.
    pub shard_size: Option<usize>,
    /// Stop after this many shards (a rerun resumes).
    pub max_shards: Option<usize>,
}

/// What a run did and where the time went.
#[derive(Debug, Clone, Default)]
pub struct GenerateSummary {
    /// The store folder (the run folder, or its part folder).
    pub store: PathBuf,
    /// Samples of this part, those done before this run, those generated now.
    pub images: usize,
    pub already_done: usize,
    pub generated: usize,
    pub shards_written: usize,
    /// True when `max_shards` stopped the run before the end.
    pub stopped: bool,
    /// Notices printed once (scheduler swap, truncated prompts).
    pub notices: Vec<String>,
    pub elapsed: Duration,
    pub text: Duration,
    pub sampling: Duration,
    pub decode: Duration,
    pub write: Duration,
}

impl GenerateSummary {
    pub fn images_per_second(&self) -> f64 {
        self.generated as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The file name of sample `i`'s image (relative to the run folder).
pub fn image_file(i: usize) -> String {
    format!("images/{i:06}.png")
}

fn latents_file(i: usize) -> String {
    format!("latents/{i:06}.safetensors")
}

fn model_path(p: &Path) -> String {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}

/// Checks what can be checked before loading anything.
fn check(opts: &GenerateOptions) -> Result<()> {
    let bad = |m: String| Err(Error::BadOption(m));
    let s = &opts.sampling;
    if opts.prompts.is_empty() {
        return bad("no prompts: give --prompt or --prompts FILE".into());
    }
    if opts.height == 0 || opts.width == 0 || !opts.height.is_multiple_of(8) || !opts.width.is_multiple_of(8) {
        return bad(format!("--height {} --width {}: both must be positive multiples of 8 (as diffusers requires)", opts.height, opts.width));
    }
    if s.steps == 0 || opts.batch_size == 0 || opts.images_per_prompt == 0 {
        return bad("--steps, --batch-size and --images-per-prompt must be at least 1".into());
    }
    if !s.guidance.is_finite() || !s.eta.is_finite() || s.eta < 0.0 {
        return bad(format!("--guidance {} --eta {}: both must be finite, eta >= 0", s.guidance, s.eta));
    }
    let (i, n) = opts.part;
    if n == 0 || i >= n {
        return bad(format!("--shard {}/{n}: expected i/n with 1 <= i <= n", i + 1));
    }
    if let Some(size) = opts.shard_size {
        if !size.is_power_of_two() || size > BLOCK {
            return bad(format!("--shard-size {size}: must be a power of two up to {BLOCK}, so shards tile the parts"));
        }
    }
    if let Some(c) = &opts.collect {
        let mut seen = BTreeSet::new();
        if let Some(t) = c.taps.iter().find(|t| !seen.insert(t.as_str())) {
            return bad(format!("--collect: {t} is given twice"));
        }
        if c.steps.is_empty() {
            return bad("--collect-steps: give at least one step (or `all`)".into());
        }
        if let Some(&k) = c.steps.iter().find(|&&k| k >= s.steps) {
            return bad(format!("--collect-steps: step {k} is beyond --steps {} (steps are numbered 0..={})", s.steps, s.steps - 1));
        }
        let mut seen = BTreeSet::new();
        if let Some(k) = c.steps.iter().find(|k| !seen.insert(**k)) {
            return bad(format!("--collect-steps: {k} is given twice"));
        }
        if !s.cfg() && c.branches.contains(&Branch::Uncond) {
            return bad(format!(
                "--collect-branch: --guidance {} runs no classifier-free guidance, so there is no uncond branch; collect cond",
                s.guidance
            ));
        }
        if !c.dtype.is_float() {
            return bad(format!("--collect-dtype {}: features are stored as f32, f16 or bf16", c.dtype));
        }
    }
    Ok(())
}

/// Initial latents given with `--init-latents`.
enum InitLatents {
    /// [N, L, h, w] f32 on the host.
    File(Tensor),
    /// Per-sample files with an `initial` tensor [L, h, w].
    Folder(PathBuf),
}

impl InitLatents {
    fn open(path: &Path, samples: usize, dims: &[usize]) -> Result<InitLatents> {
        if path.is_dir() {
            return Ok(InitLatents::Folder(path.to_path_buf()));
        }
        let f = SafeTensorsFile::open(path)?;
        let keys = f.keys();
        let key = if f.contains("latents") {
            "latents".to_string()
        } else if keys.len() == 1 {
            keys[0].clone()
        } else {
            return Err(Error::format(path, format!("no `latents` tensor among {} (and more than one tensor)", keys.join(", "))));
        };
        let t = f.load(&key, DType::F32, &Device::Cpu)?;
        if t.rank() != 4 || t.dims()[1..] != *dims || t.dims()[0] < samples {
            return Err(Error::format(
                path,
                format!("`{key}` has shape {}; this run needs [{samples}, {}] (one row per sample)", t.shape(), dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
            ));
        }
        Ok(InitLatents::File(t))
    }

    /// The initial latents of `samples`: [B, L, h, w].
    fn get(&self, samples: &[usize], dims: &[usize]) -> Result<Tensor> {
        let rows = match self {
            InitLatents::File(t) => samples.iter().map(|&i| t.narrow0(i, 1)).collect::<Result<Vec<_>>>()?,
            InitLatents::Folder(dir) => samples
                .iter()
                .map(|&i| {
                    let path = dir.join(format!("{i:06}.safetensors"));
                    SafeTensorsFile::open(&path)?.load_shaped("initial", dims, DType::F32, &Device::Cpu)?.reshape(
                        std::iter::once(1).chain(dims.iter().copied()).collect::<Vec<_>>(),
                    )
                })
                .collect::<Result<Vec<_>>>()?,
        };
        ops::cat(&rows.iter().collect::<Vec<_>>(), 0)
    }
}

/// The negative prompt of `p`.
fn negative<'a>(opts: &'a GenerateOptions, p: &'a Prompt) -> &'a str {
    p.negative.as_deref().unwrap_or(&opts.negative_prompt)
}

/// The manifest this run writes: every sample, and everything that shapes the images.
fn manifest(opts: &GenerateOptions, pipe: &Pipeline, layers: &[String], steps: &[(usize, usize)], shard_size: usize) -> Manifest {
    let s = &opts.sampling;
    let mut set = Map::new();
    set.insert("kind".into(), json!("generation"));
    set.insert("model_kind".into(), json!(pipe.kind()));
    set.insert("model_dtype".into(), json!(opts.model_dtype.name()));
    set.insert("sampler".into(), json!("DDIM"));
    set.insert("steps".into(), json!(s.steps));
    set.insert("guidance".into(), json!(s.guidance));
    set.insert("eta".into(), json!(s.eta));
    set.insert("height".into(), json!(opts.height));
    set.insert("width".into(), json!(opts.width));
    set.insert("negative_prompt".into(), json!(opts.negative_prompt));
    set.insert("images_per_prompt".into(), json!(opts.images_per_prompt));
    set.insert("prompts".into(), json!(opts.prompts_source));
    set.insert("images".into(), json!(opts.write_images));
    set.insert("save_latents".into(), json!(opts.save_latents));
    set.insert("init_latents".into(), json!(opts.init_latents.as_deref().map(model_path)));
    set.insert("shard_size".into(), json!(shard_size));
    if let Some(c) = &opts.collect {
        set.insert(
            "collect".into(),
            json!({
                "taps": c.taps,
                "steps": steps.iter().map(|s| s.0).collect::<Vec<_>>(),
                "timesteps": steps.iter().map(|s| s.1).collect::<Vec<_>>(),
                "branches": c.branches.iter().map(|b| b.name()).collect::<Vec<_>>(),
            }),
        );
    }
    if opts.part.1 > 1 {
        set.insert("part".into(), json!(format!("{}/{}", opts.part.0 + 1, opts.part.1)));
    }
    let k = opts.images_per_prompt;
    let images = (0..opts.prompts.len() * k)
        .map(|i| ImageEntry { path: image_file(i), label: (i / k) as i64, split: String::new(), prompt: None, caption: Some(opts.prompts[i / k].text.clone()) })
        .collect();
    Manifest {
        format: STORE_FORMAT.into(),
        model: model_path(&opts.model),
        model_config_hash: pipe.config_hash.clone(),
        layers: layers.to_vec(),
        timesteps: steps.iter().map(|s| s.1).collect(),
        pooling: opts.collect.as_ref().map_or("tokens".into(), |c| c.pooling.name()),
        dtype: opts.collect.as_ref().map_or(DType::F32, |c| c.dtype).name().into(),
        seed: s.seed,
        settings: set,
        images,
        class_names: Vec::new(),
        feature_shapes: HashMap::new(),
        shards: vec![],
        failures: vec![],
    }
}

/// Bytes of collected features per sample, from one probe call on a blank latent (which also
/// checks, before any work, that every tap runs at this size).
fn probe_bytes(pipe: &mut Pipeline, c: &Collect, requests: &[TapRequest], dims: &[usize]) -> Result<usize> {
    let x = Tensor::zeros(std::iter::once(1).chain(dims.iter().copied()).collect::<Vec<_>>(), DType::F32, &Device::Cpu)?;
    let ctx = pipe.encode_prompts(&[""])?;
    let values = pipe.record(&x, 0, Some(&ctx), None, requests, &[0])?;
    let mut per = 0;
    for r in requests {
        let v = values.get(&r.name).ok_or_else(|| Error::Internal(format!("tap {} was not recorded", r.name)))?;
        per += c.pooling.apply(v).with_context(|| format!("--collect {}", r.name))?.0.len();
    }
    Ok(per * c.dtype.size_in_bytes() * c.steps.len() * c.branches.len())
}

/// Keeps the index lines of samples in done shards (a line of a shard that was being written
/// when a run stopped is dropped; the shard is redone).
fn repair_index(path: &Path, writer: &FeatureStoreWriter) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let done = |i: usize| writer.manifest().shards.iter().any(|s| s.start <= i && i < s.start + s.count);
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).ok().and_then(|v| v["index"].as_u64()).is_some_and(|i| done(i as usize)))
        .collect();
    if kept.len() != text.lines().count() {
        let mut body = kept.join("\n");
        if !body.is_empty() {
            body.push('\n');
        }
        write_atomic(path, body.as_bytes())?;
    }
    Ok(())
}

/// The PNG text chunks of sample `i`.
fn text_chunks(opts: &GenerateOptions, model: &str, i: usize) -> Vec<(&'static str, String)> {
    let p = &opts.prompts[i / opts.images_per_prompt];
    let s = &opts.sampling;
    vec![
        ("prompt", p.text.clone()),
        ("negative_prompt", negative(opts, p).to_string()),
        ("seed", s.seed.to_string()),
        ("sample", i.to_string()),
        ("steps", s.steps.to_string()),
        ("guidance", s.guidance.to_string()),
        ("eta", s.eta.to_string()),
        ("sampler", "DDIM".into()),
        ("model", model.to_string()),
        ("software", format!("revelio {}", env!("CARGO_PKG_VERSION"))),
    ]
}

/// The index line of sample `i`.
fn index_line(opts: &GenerateOptions, i: usize) -> String {
    let k = opts.images_per_prompt;
    let p = &opts.prompts[i / k];
    let s = &opts.sampling;
    let mut v = json!({
        "index": i,
        "prompt_index": i / k,
        "source_row": p.source_row,
        "prompt": p.text,
        "negative_prompt": negative(opts, p),
        "seed": s.seed,
        "steps": s.steps,
        "guidance": s.guidance,
        "eta": s.eta,
        "height": opts.height,
        "width": opts.width,
    });
    if opts.write_images {
        v["file"] = json!(image_file(i));
    }
    if opts.save_latents {
        v["latents"] = json!(latents_file(i));
    }
    v.to_string()
}

/// Runs `revelio generate` as `opts` says (see the module docs); `progress`: show a bar or log
/// lines, and print notices as they arise (they are in the summary either way).
pub fn generate(opts: &GenerateOptions, progress: bool) -> Result<GenerateSummary> {
    generate_with(opts, progress, &|_| Ok(()))
}

/// `generate`, with `install` adding hooks (edits, more records) to the hook context of every
/// batch before it is sampled: the interventions' entry point.
pub fn generate_with(opts: &GenerateOptions, progress: bool, install: &dyn Fn(&mut Taps) -> Result<()>) -> Result<GenerateSummary> {
    let t_start = Instant::now();
    check(opts)?;
    let mut summary = GenerateSummary::default();

    // 1. the pipeline, the taps, the steps
    let mut pipe = Pipeline::load(&opts.model, opts.model_dtype, &opts.device)?;
    if pipe.is_dit() {
        return Err(Error::BadOption(format!(
            "{}: a DiT pipeline is class-conditional; revelio generate samples text-to-image Stable Diffusion pipelines",
            opts.model.display()
        )));
    }
    let note = |summary: &mut GenerateSummary, n: String| {
        if progress {
            eprintln!("note: {n}");
        }
        summary.notices.push(n);
    };
    if let Some(n) = pipe.scheduler_notice() {
        note(&mut summary, n);
    }
    let timesteps = pipe.sampler()?.set_timesteps(opts.sampling.steps)?;
    let requests = match &opts.collect {
        Some(c) => pipe.resolve(&c.taps).context("--collect")?,
        None => Vec::new(),
    };
    let steps: Vec<(usize, usize)> = opts.collect.as_ref().map_or(Vec::new(), |c| c.steps.iter().map(|&k| (k, timesteps[k])).collect());
    let layers: Vec<String> = opts.collect.as_ref().map_or(Vec::new(), |c| {
        c.taps.iter().flat_map(|t| c.branches.iter().map(move |&b| layer_name(t, b))).collect()
    });
    let dims = pipe.latent_dims(opts.height, opts.width);

    // 2. the samples of this part, prompts longer than the text encoder takes
    let n = opts.prompts.len() * opts.images_per_prompt;
    let range = part_range(n, opts.part.0, opts.part.1, BLOCK);
    let prompts_here: BTreeSet<usize> = range.clone().map(|i| i / opts.images_per_prompt).collect();
    let mut long = Vec::new();
    for &p in &prompts_here {
        let prompt = &opts.prompts[p];
        for text in std::iter::once(prompt.text.as_str()).chain(opts.sampling.cfg().then(|| negative(opts, prompt))) {
            let (count, max) = pipe.prompt_tokens(text)?;
            if count > max {
                long.push((p, count, max));
            }
        }
    }
    if let Some(&(p, _, max)) = long.first() {
        let worst = long.iter().map(|l| l.1).max().unwrap_or(0);
        let n = format!(
            "{} prompts are longer than the text encoder's {max} tokens and are truncated to them, as diffusers does \
             (the first: prompt {p}; the longest has {worst} tokens)",
            long.len()
        );
        note(&mut summary, n);
    }
    let init = opts.init_latents.as_deref().map(|p| InitLatents::open(p, n, &dims)).transpose()?;

    // 3. the store (resumed if there), the shards still to do
    let shard_size = match (opts.shard_size, &opts.collect) {
        (Some(s), _) => s,
        (None, Some(c)) => {
            let per = probe_bytes(&mut pipe, c, &requests, &dims).context("running the U-Net at --height/--width")?;
            1usize << (SHARD_BYTES / per.max(1)).clamp(1, BLOCK).ilog2()
        }
        (None, None) => BLOCK,
    };
    let store = part_dir(&opts.out, opts.part);
    if !store.join(MANIFEST).exists() {
        if let Some(i) = range.clone().find(|&i| opts.out.join(image_file(i)).exists()) {
            return Err(Error::BadOption(format!(
                "{} holds {} but no run that made it ({} is missing): use another --out folder, nothing there is touched",
                opts.out.display(),
                image_file(i),
                store.join(MANIFEST).display()
            )));
        }
    }
    let mut writer = FeatureStoreWriter::create_or_resume(&store, manifest(opts, &pipe, &layers, &steps, shard_size))?;
    let index_path = store.join(INDEX);
    repair_index(&index_path, &writer)?;
    let todo: Vec<(usize, usize)> = grid(range.clone(), shard_size).into_iter().filter(|&(s, c)| !writer.has_shard(s, c)).collect();
    summary.store = store.clone();
    summary.images = range.len();
    summary.already_done = range.len() - todo.iter().map(|t| t.1).sum::<usize>();

    // 4. shard by shard, batch by batch
    let collector = opts.collect.as_ref().map(|c| Arc::new(Mutex::new(Collector::new(c.pooling, steps.clone(), c.branches.clone()))));
    let model = model_path(&opts.model);
    let mut bar = progress.then(|| Progress::new("generate", todo.iter().map(|t| t.1 as u64).sum(), "img"));
    let s = &opts.sampling;
    for &(start, count) in &todo {
        if let Some(c) = &collector {
            c.lock().map_err(|_| Error::Internal("the collector panicked".into()))?.begin_shard(start, count);
        }
        for b0 in (start..start + count).step_by(opts.batch_size) {
            let idx: Vec<usize> = (b0..(b0 + opts.batch_size).min(start + count)).collect();
            let prompts: Vec<&Prompt> = idx.iter().map(|&i| &opts.prompts[i / opts.images_per_prompt]).collect();
            let t0 = Instant::now();
            let cond = pipe.encode_prompts(&prompts.iter().map(|p| p.text.as_str()).collect::<Vec<_>>())?;
            let uncond = if s.cfg() { Some(pipe.encode_prompts(&prompts.iter().map(|p| negative(opts, p)).collect::<Vec<_>>())?) } else { None };
            let latents = match &init {
                Some(init) => init.get(&idx, &dims)?,
                None => initial_latents(s.seed, &idx, &dims)?,
            };
            summary.text += t0.elapsed();

            let t0 = Instant::now();
            let mut taps = Taps::new(Vec::new(), true);
            if let (Some(c), Some(sink)) = (&opts.collect, &collector) {
                for r in &requests {
                    taps.record(r.clone(), c.when());
                }
                taps.stream_to(Box::new(sink.clone()));
            }
            install(&mut taps)?;
            let final_latents = pipe.sample(&latents, &cond, uncond.as_ref(), &idx, s, &mut taps, &mut |k| {
                if let Some(p) = bar.as_mut() {
                    p.set_message(format!("step {}/{}", k + 1, s.steps));
                }
            })?;
            summary.sampling += t0.elapsed();

            if opts.write_images {
                let t0 = Instant::now();
                let images = png::to_rgb(&pipe.decode(&final_latents)?)?;
                summary.decode += t0.elapsed();
                let t0 = Instant::now();
                for (img, &i) in images.iter().zip(&idx) {
                    png::write(&opts.out.join(image_file(i)), img, &text_chunks(opts, &model, i))?;
                }
                summary.write += t0.elapsed();
            }
            if opts.save_latents {
                let t0 = Instant::now();
                let fin = ops::to_dtype(&final_latents, DType::F32)?.to_device(&Device::Cpu)?;
                for (r, &i) in idx.iter().enumerate() {
                    let (a, b) = (latents.narrow0(r, 1)?.reshape(dims.clone())?, fin.narrow0(r, 1)?.reshape(dims.clone())?);
                    save_safetensors(opts.out.join(latents_file(i)), &[("initial", &a), ("final", &b)], None)?;
                }
                summary.write += t0.elapsed();
            }
            summary.generated += idx.len();
            if let Some(p) = bar.as_mut() {
                p.inc(idx.len() as u64);
            }
        }
        // the shard: its features, then its index lines, then the manifest records it done
        let t0 = Instant::now();
        let features = match (&collector, &opts.collect) {
            (Some(sink), Some(c)) => sink.lock().map_err(|_| Error::Internal("the collector panicked".into()))?.finish_shard(&c.taps, c.dtype)?,
            _ => Vec::new(),
        };
        let lines: String = (start..start + count).map(|i| index_line(opts, i) + "\n").collect();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&index_path).map_err(|e| Error::io(&index_path, e))?;
        f.write_all(lines.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| Error::io(&index_path, e))?;
        writer
            .write_shard(start, count, &features, &[])
            .with_context(|| format!("writing the shard of samples {start}..{} to {}", start + count, store.display()))?;
        summary.write += t0.elapsed();
        summary.shards_written += 1;
        if opts.max_shards.is_some_and(|m| summary.shards_written >= m) {
            summary.stopped = summary.shards_written < todo.len();
            break;
        }
    }
    if let Some(p) = bar {
        p.finish();
    }

    // 5. the contact sheet of the first images of this part
    if opts.write_images && !summary.stopped && !range.is_empty() {
        let images = range.clone().take(CONTACT_IMAGES).map(|i| RgbImage::open(&opts.out.join(image_file(i)))).collect::<Result<Vec<_>>>()?;
        let name = if opts.part.1 > 1 { format!("contact-part-{:05}-of-{:05}.png", opts.part.0, opts.part.1) } else { "contact.png".into() };
        png::contact_sheet(&images, CONTACT_CELL, &opts.out.join(name))?;
    }
    summary.elapsed = t_start.elapsed();
    Ok(summary)
}
