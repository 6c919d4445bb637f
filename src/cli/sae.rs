//! `revelio sae train|encode|eval|analyze`: the clap arguments and what each command runs.
//! Defaults are Revelio's (train_ksae.py's command line); the stable-concepts SAE is
//! `--relu --k 10 --expansion 4 --aux-k 256 --aux-coef 0.03125 --init tied --loss scaled-mse
//! (or plain mse) --b-dec-init median --rows position --batch 4096 --lr 1e-4 --warmup 0
//! --adam-eps 6.25e-10` (docs/sae.md).

use super::args::device;
use crate::sae::checkpoint::{self, Provenance};
use crate::sae::data::{self, RowKind, Rows};
use crate::sae::loss::{AuxConfig, LossKind};
use crate::sae::metrics;
use crate::sae::model::Init;
use crate::sae::train::{self, BDecInit, Decay, Moments, TrainConfig, TrainOptions};
use crate::analysis::{self, explorer::ReportMeta, top::RankBy, AnalyzeOptions};
use crate::features::FeatureStore;
use crate::io::{save_safetensors, write_atomic};
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};
use clap::{Args, Subcommand};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum SaeCommand {
    /// Train a TopK SAE on features (a progress bar shows loss, FVU, L0 and dead latents;
    /// checkpoints every --checkpoint-every steps; rerunning the same command resumes).
    Train(Box<TrainArgs>),
    /// Write the sparse codes (indices, values) of features to a safetensors file.
    Encode(Box<EncodeArgs>),
    /// Held-out MSE, normalized MSE, FVU, L0, dead fraction and the latent frequency histogram.
    Eval(Box<EvalArgs>),
    /// Top images per latent, sigma_label, purity, image grids and an HTML report.
    Analyze(Box<AnalyzeArgs>),
}

/// Where rows come from: a feature store (layer, timestep, split) or a safetensors tensor.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// A feature store folder (what `revelio extract` writes).
    #[arg(long)]
    pub features: Option<PathBuf>,
    /// The layer in the store (e.g. mid, up.1); may be left out when the store has one.
    #[arg(long)]
    pub layer: Option<String>,
    /// The timestep in the store; may be left out when the store has one.
    #[arg(long)]
    pub timestep: Option<usize>,
    /// A store of `revelio generate`: the sampling step (instead of --timestep).
    #[arg(long)]
    pub step: Option<usize>,
    /// A store of `revelio generate`: the branch, cond or uncond (the layer becomes
    /// `<layer>@<branch>`).
    #[arg(long)]
    pub branch: Option<String>,
    /// The store split (default: `train` for training and analysis when the store has it).
    #[arg(long)]
    pub split: Option<String>,
    /// Or a safetensors file with a [rows, d] tensor.
    #[arg(long, conflicts_with = "features")]
    pub input: Option<PathBuf>,
    /// The tensor in --input (needed when the file holds several).
    #[arg(long, requires = "input")]
    pub tensor: Option<String>,
    /// One row per image (mean-pooled, Revelio) or per spatial position.
    #[arg(long)]
    pub rows: Option<String>,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[arg(long, default_value_t = 32)]
    pub k: usize,
    /// Latents = expansion * d.
    #[arg(long, default_value_t = 64)]
    pub expansion: usize,
    /// Latents, instead of --expansion.
    #[arg(long)]
    pub d_sae: Option<usize>,
    /// ReLU before the top-k (the stable-concepts SAE); Revelio has none.
    #[arg(long)]
    pub relu: bool,
    /// revelio (kaiming-uniform, unit-norm decoder rows) or tied (W_enc = W_dec^T).
    #[arg(long, default_value = "revelio")]
    pub init: String,
    /// mean (Revelio), median (geometric, as openai/sdxl-unbox) or zero.
    #[arg(long, default_value = "mean")]
    pub b_dec_init: String,
    /// nmse (Revelio), mse, or scaled-mse (MSE over the first batch's variance).
    #[arg(long, default_value = "nmse")]
    pub loss: String,
    /// Dead latents reconstructing the residual (AuxK); 0 turns it off.
    #[arg(long, default_value_t = 0)]
    pub aux_k: usize,
    #[arg(long, default_value_t = 0.03125)]
    pub aux_coef: f32,
    /// A latent is dead after this many samples without firing.
    #[arg(long, default_value_t = 10_000_000)]
    pub dead_after: u64,
    #[arg(long, default_value_t = 4e-4)]
    pub lr: f32,
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f32,
    #[arg(long, default_value_t = 0.999)]
    pub beta2: f32,
    #[arg(long, default_value_t = 1e-8)]
    pub adam_eps: f32,
    #[arg(long, default_value_t = 500)]
    pub warmup: usize,
    /// none (Revelio), linear or cosine, from --decay-start * steps.
    #[arg(long, default_value = "none")]
    pub decay: String,
    #[arg(long, default_value_t = 0.8)]
    pub decay_start: f32,
    #[arg(long, default_value_t = 8192)]
    pub batch: usize,
    /// Steps (default 10,240, Revelio's 83,886,080 samples at batch 8192).
    #[arg(long, conflicts_with = "samples")]
    pub steps: Option<usize>,
    /// Total samples instead of --steps (steps = samples / batch).
    #[arg(long)]
    pub samples: Option<u64>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Adam's moments in f32 or bf16.
    #[arg(long, default_value = "f32")]
    pub moments: String,
    /// Scale inputs so that E||x||^2 = d (stored with the weights, applied when encoding).
    #[arg(long)]
    pub scale_inputs: bool,
    /// Fraction of the split's images held out of training (for `sae eval`).
    #[arg(long, default_value_t = 0.0)]
    pub holdout: f64,
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_every: usize,
    #[arg(long, default_value_t = 10)]
    pub log_every: usize,
    /// Start over even if --out holds a checkpoint.
    #[arg(long)]
    pub restart: bool,
    /// auto (the first GPU, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// The SAE folder (sae_weights.safetensors, cfg.json).
    #[arg(long)]
    pub sae: PathBuf,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Rows encoded per pass.
    #[arg(long, default_value_t = 8192)]
    pub batch: usize,
    /// auto (the first GPU, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// The output safetensors file: indices i32 [rows, k], values f32 [rows, k], image i64
    /// [rows] (and position i32 [rows] for per-position rows).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The SAE folder (sae_weights.safetensors, cfg.json).
    #[arg(long)]
    pub sae: PathBuf,
    /// Default rows: the images held out in training, else the store's `test` split.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Rows encoded per pass.
    #[arg(long, default_value_t = 8192)]
    pub batch: usize,
    /// auto (the first GPU, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Also write the report (with every latent's frequency) as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// The SAE folder (sae_weights.safetensors, cfg.json). Default features: the store it was
    /// trained on, at its layer and timestep.
    #[arg(long)]
    pub sae: PathBuf,
    #[command(flatten)]
    pub source: SourceArgs,
    /// dense (relu of the pre-activation, Revelio's code) or code (the top-k code).
    #[arg(long, default_value = "dense")]
    pub rank_by: String,
    /// Top images kept per latent (sigma uses the first 10).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Latents (by rank) that get a PNG grid of their top images (grids/).
    #[arg(long, default_value_t = 100)]
    pub grids: usize,
    /// Latents (by rank) written to latents.json (the explorer lists all).
    #[arg(long, default_value_t = 1000)]
    pub list: usize,
    /// Latents that get a page in the explorer, by id (e.g. 3,17,250; default: all).
    #[arg(long, value_delimiter = ',')]
    pub latents: Option<Vec<usize>>,
    /// Nearest latents by decoder cosine on each page (0: none).
    #[arg(long, default_value_t = 10)]
    pub neighbours: usize,
    /// Side of each thumbnail in pixels.
    #[arg(long, default_value_t = 96)]
    pub thumb: u32,
    /// Folder the manifest's relative image paths are under.
    #[arg(long)]
    pub image_root: Option<PathBuf>,
    /// Images encoded per pass.
    #[arg(long, default_value_t = 256)]
    pub chunk: usize,
    /// auto (the first GPU, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// The report folder (index.html and latent.html with assets/, data/, thumbs/, figures/;
    /// grids/, average_stds.json, sigma.json, latents.json).
    #[arg(long)]
    pub out: PathBuf,
}

/// An opened store with its (layer, timestep), resolved.
struct StoreSource {
    store: FeatureStore,
    layer: String,
    timestep: usize,
}

fn open_store(dir: &Path, layer: Option<&str>, timestep: Option<usize>, src: &SourceArgs) -> Result<StoreSource> {
    let store = FeatureStore::open(dir)?;
    let m = store.manifest();
    let (layer, timestep) = m.select(layer, timestep, src.step, src.branch.as_deref())?;
    let layer = layer.as_deref();
    let layer = match layer {
        Some(l) => l.to_string(),
        None if m.layers.len() == 1 => m.layers[0].clone(),
        None => return Err(Error::BadOption(format!("{}: pass --layer (the store has layers [{}])", dir.display(), m.layers.join(", ")))),
    };
    let timestep = match timestep {
        Some(t) => t,
        None if m.timesteps.len() == 1 => m.timesteps[0],
        None => return Err(Error::BadOption(format!("{}: pass --timestep (the store has {:?})", dir.display(), m.timesteps))),
    };
    store.feature_shape(&layer, timestep)?;
    Ok(StoreSource { store, layer, timestep })
}

/// The split asked for, else `train` when the store has one (`default_train`), else all.
fn split_name(store: &FeatureStore, asked: Option<&str>, default_train: bool) -> String {
    match asked {
        Some(s) => s.to_string(),
        None if default_train && store.manifest().images.iter().any(|i| i.split == "train") => "train".into(),
        None => String::new(),
    }
}

fn rows_kind(asked: Option<&str>, default: RowKind) -> Result<RowKind> {
    asked.map_or(Ok(default), RowKind::parse)
}

pub fn run(cmd: SaeCommand) -> Result<()> {
    match cmd {
        SaeCommand::Train(a) => train_cmd(*a),
        SaeCommand::Encode(a) => encode_cmd(*a),
        SaeCommand::Eval(a) => eval_cmd(*a),
        SaeCommand::Analyze(a) => analyze_cmd(*a),
    }
}

fn train_cmd(a: TrainArgs) -> Result<()> {
    let device = device(&a.device)?;
    let kind = rows_kind(a.source.rows.as_deref(), RowKind::Image)?;
    let (rows, prov) = match (&a.source.features, &a.source.input) {
        (Some(dir), None) => {
            let s = open_store(dir, a.source.layer.as_deref(), a.source.timestep, &a.source)?;
            let split = split_name(&s.store, a.source.split.as_deref(), true);
            let images = s.store.split_indices(&split);
            let (train_imgs, held) = data::holdout_split(&images, a.holdout, a.seed);
            let rows = data::from_store(&s.store, &s.layer, s.timestep, &train_imgs, kind, &device)?;
            let prov = Provenance {
                source: dir.display().to_string(),
                tensor: None,
                model: s.store.manifest().model.clone(),
                layer: Some(s.layer.clone()),
                timestep: Some(s.timestep),
                rows: kind,
                split,
                holdout_images: held,
            };
            (rows, prov)
        }
        (None, Some(file)) => {
            let rows = data::from_file(file, a.source.tensor.as_deref(), &device)?;
            let n = rows.len();
            let (train_rows, held) = data::holdout_split(&(0..n).collect::<Vec<_>>(), a.holdout, a.seed);
            let rows = Rows { x: gather(&rows, &train_rows)?, image: train_rows, per_image: 1, map_hw: None };
            let prov = Provenance {
                source: file.display().to_string(),
                tensor: a.source.tensor.clone(),
                model: String::new(),
                layer: None,
                timestep: None,
                rows: RowKind::Image,
                split: String::new(),
                holdout_images: held,
            };
            (rows, prov)
        }
        _ => return Err(Error::BadOption("sae train: pass --features STORE (with --layer, --timestep) or --input FILE.safetensors".into())),
    };
    let d = rows.d();
    let steps = match (a.steps, a.samples) {
        (Some(s), _) => s,
        (None, Some(n)) => (n / a.batch.max(1) as u64) as usize,
        (None, None) => 10_240,
    };
    let cfg = TrainConfig {
        k: a.k,
        d_sae: a.d_sae.unwrap_or(a.expansion * d),
        relu: a.relu,
        init: Init::parse(&a.init)?,
        b_dec_init: BDecInit::parse(&a.b_dec_init)?,
        loss: LossKind::parse(&a.loss)?,
        aux: AuxConfig { k: a.aux_k, coef: a.aux_coef, dead_after: a.dead_after },
        lr: a.lr,
        beta1: a.beta1,
        beta2: a.beta2,
        eps: a.adam_eps,
        warmup: a.warmup,
        decay: Decay::parse(&a.decay)?,
        decay_start: a.decay_start,
        batch: a.batch,
        steps,
        seed: a.seed,
        moments: Moments::parse(&a.moments)?,
        scale_inputs: a.scale_inputs,
        checkpoint_every: a.checkpoint_every,
        log_every: a.log_every,
    };
    eprintln!(
        "sae train: {} rows of d = {d} on {device}, {} latents, k = {}, {} steps of {}",
        rows.len(),
        cfg.d_sae,
        cfg.k,
        cfg.steps,
        cfg.batch
    );
    let st = train::train(&cfg, &rows, &a.out, &prov, &TrainOptions { restart: a.restart, stop_after: None })?;
    println!("trained {} steps ({} samples); wrote {}", st.step, st.samples_seen, a.out.join(checkpoint::WEIGHTS).display());
    Ok(())
}

fn gather(rows: &Rows, idx: &[usize]) -> Result<Tensor> {
    let ids: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    crate::ops::gather_rows(&rows.x, &Tensor::from_vec(ids, [idx.len()], &rows.x.device())?)
}

/// Rows for encode/eval/analyze: the source given, or the one the SAE was trained on.
fn rows_for(info: &checkpoint::RevelioInfo, src: &SourceArgs, images: impl Fn(&FeatureStore, &str) -> Result<Vec<usize>>, device: &Device) -> Result<(Rows, Option<StoreSource>)> {
    let kind = rows_kind(src.rows.as_deref(), info.provenance.rows)?;
    if let Some(file) = &src.input {
        return Ok((data::from_file(file, src.tensor.as_deref(), device)?, None));
    }
    let dir = match (&src.features, info.provenance.tensor.is_none() && !info.provenance.source.is_empty()) {
        (Some(d), _) => d.clone(),
        (None, true) => PathBuf::from(&info.provenance.source),
        (None, false) => return Err(Error::BadOption("pass --features STORE or --input FILE".into())),
    };
    let layer = src.layer.clone().or_else(|| info.provenance.layer.clone());
    let s = open_store(&dir, layer.as_deref(), src.timestep.or(info.provenance.timestep), src)?;
    let split = src.split.clone().unwrap_or_default();
    let imgs = images(&s.store, &split)?;
    let rows = data::from_store(&s.store, &s.layer, s.timestep, &imgs, kind, device)?;
    Ok((rows, Some(s)))
}

fn check_d(rows: &Rows, d_in: usize, what: &str) -> Result<()> {
    if rows.d() != d_in {
        return Err(Error::BadInput(format!("{what} have d = {}; the SAE takes d_in = {d_in}", rows.d())));
    }
    Ok(())
}

fn encode_cmd(a: EncodeArgs) -> Result<()> {
    let device = device(&a.device)?;
    let (sae, info) = checkpoint::load_sae(&a.sae, &device)?;
    let (rows, _) = rows_for(&info, &a.source, |store, split| Ok(store.split_indices(split)), &device)?;
    check_d(&rows, sae.cfg.d_in, "the features")?;
    let k = sae.cfg.k;
    let (mut idx, mut vals) = (Vec::with_capacity(rows.len() * k), Vec::with_capacity(rows.len() * k));
    let mut start = 0;
    while start < rows.len() {
        let len = a.batch.max(1).min(rows.len() - start);
        let code = sae.encode(&rows.slice(start, len)?)?;
        idx.extend(code.idx.to_vec::<i32>()?);
        vals.extend(code.vals.to_f32_vec()?);
        start += len;
    }
    let n = rows.len();
    let indices = Tensor::from_vec(idx, [n, k], &Device::Cpu)?;
    let values = Tensor::from_vec(vals, [n, k], &Device::Cpu)?;
    let image = Tensor::from_vec(rows.image.iter().map(|&i| i as i64).collect::<Vec<_>>(), [n], &Device::Cpu)?;
    let position = Tensor::from_vec((0..n).map(|r| (r % rows.per_image) as i32).collect::<Vec<_>>(), [n], &Device::Cpu)?;
    let mut named: Vec<(&str, &Tensor)> = vec![("indices", &indices), ("values", &values), ("image", &image)];
    if rows.per_image > 1 {
        named.push(("position", &position));
    }
    let meta = HashMap::from([("sae".to_string(), a.sae.display().to_string()), ("d_sae".to_string(), sae.cfg.d_sae.to_string())]);
    save_safetensors(&a.out, &named, Some(meta))?;
    println!("encoded {n} rows into {}", a.out.display());
    Ok(())
}

fn eval_cmd(a: EvalArgs) -> Result<()> {
    let device = device(&a.device)?;
    let (sae, info) = checkpoint::load_sae(&a.sae, &device)?;
    let held = info.provenance.holdout_images.clone();
    let same_store = a.source.features.as_ref().is_none_or(|f| f.display().to_string() == info.provenance.source);
    let (rows, _) = if a.source.input.is_none() && info.provenance.tensor.is_some() && a.source.features.is_none() {
        // Trained on a plain file: its held-out rows.
        let file = PathBuf::from(&info.provenance.source);
        let all = data::from_file(&file, info.provenance.tensor.as_deref(), &device)?;
        if held.is_empty() {
            return Err(Error::BadOption(format!("{}: no rows were held out in training; pass --input", a.sae.display())));
        }
        (Rows { x: gather(&all, &held)?, image: held, per_image: 1, map_hw: None }, None)
    } else {
        rows_for(
            &info,
            &a.source,
            |store, split| {
                if a.source.split.is_some() {
                    return Ok(store.split_indices(split));
                }
                if !held.is_empty() && same_store {
                    return Ok(held.clone());
                }
                if store.manifest().images.iter().any(|i| i.split == "test") {
                    return Ok(store.split_indices("test"));
                }
                Err(Error::BadOption(format!("{}: no held-out images and no `test` split; pass --split", store.dir().display())))
            },
            &device,
        )?
    };
    check_d(&rows, sae.cfg.d_in, "the features")?;
    let r = metrics::evaluate(&sae, &rows, a.batch)?;
    println!("rows {}", r.rows);
    println!("mse {:.6e}  nmse {:.6}  fvu {:.6}  explained variance {:.4}", r.mse, r.nmse, r.fvu, r.explained_variance);
    println!("L0 {:.2}  dead fraction {:.4}", r.l0, r.dead_fraction);
    println!("latent frequency (log10 bins):");
    for b in &r.frequency_histogram {
        println!("  [{:>5}, {:>5})  {}", b.lo, b.hi, b.count);
    }
    if let Some(path) = &a.json {
        let mut v = serde_json::to_value(&r).map_err(|e| Error::Internal(format!("eval report: {e}")))?;
        v["frequency"] = serde_json::json!(r.frequency);
        write_atomic(path, serde_json::to_string_pretty(&v).map_err(|e| Error::Internal(format!("eval report: {e}")))?.as_bytes())?;
    }
    Ok(())
}

fn analyze_cmd(a: AnalyzeArgs) -> Result<()> {
    let device = device(&a.device)?;
    let (sae, info) = checkpoint::load_sae(&a.sae, &device)?;
    let dir = match &a.source.features {
        Some(d) => d.clone(),
        None if info.provenance.tensor.is_none() && !info.provenance.source.is_empty() => PathBuf::from(&info.provenance.source),
        None => return Err(Error::BadOption("sae analyze: pass --features STORE (labels and images come from its manifest)".into())),
    };
    let layer = a.source.layer.clone().or_else(|| info.provenance.layer.clone());
    let s = open_store(&dir, layer.as_deref(), a.source.timestep.or(info.provenance.timestep), &a.source)?;
    let split = split_name(&s.store, a.source.split.as_deref(), true);
    let images = s.store.split_indices(&split);
    let kind = rows_kind(a.source.rows.as_deref(), info.provenance.rows)?;
    let opts = AnalyzeOptions {
        rank_by: RankBy::parse(&a.rank_by)?,
        top: a.top,
        grids: a.grids,
        list: a.list,
        latents: a.latents.clone(),
        neighbours: a.neighbours,
        thumb: a.thumb,
        grid_cols: 10,
        chunk: a.chunk,
        image_root: a.image_root.clone(),
        split: split.clone(),
    };
    let meta = ReportMeta {
        title: format!("SAE latents: {} at t{}", s.layer, s.timestep),
        facts: vec![
            ("SAE".into(), a.sae.display().to_string()),
            ("features".into(), format!("{} (split `{split}`, {} images, {} rows)", dir.display(), images.len(), kind.name())),
            ("model".into(), s.store.manifest().model.clone()),
            ("SAE size".into(), format!("d_in {}, d_sae {}, k {}, ReLU {}", sae.cfg.d_in, sae.cfg.d_sae, sae.cfg.k, sae.cfg.relu)),
            ("images ranked by".into(), opts.rank_by.name().into()),
        ],
        class_names: s.store.manifest().class_names.clone(),
    };
    let src = analysis::Features { store: &s.store, layer: &s.layer, timestep: s.timestep };
    let summary = analysis::analyze(&sae, src, &images, kind, &opts, &a.out, &meta)?;
    for av in &summary.averages {
        println!("top {:>6}: sigma_label {:.4}  majority {:.3}  entropy {:.3} bits", av.n, av.sigma_label, av.majority_fraction, av.label_entropy_bits);
    }
    for note in &summary.notes {
        eprintln!("warning: {note}");
    }
    println!("wrote {}", a.out.join("index.html").display());
    Ok(())
}
