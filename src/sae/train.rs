//! The training loop, as Revelio's `train_ksae_on_sd` runs it, with the stable-concepts
//! variant's options:
//!
//! 0. (fresh run) init the weights; b_dec = the mean (or geometric median) of loader batch 0;
//!    for scaled MSE, the variance of that batch; for input scaling, sqrt(d / E||x||^2) over
//!    all training rows;
//! 1. step s (0-based) takes loader batch s + 1 (the reference's b_dec init consumed batch 0);
//!    the loader is a fresh seeded permutation of the rows each epoch, in batches of `batch`
//!    with a short last one (DataLoader without drop_last), so a set smaller than a batch is
//!    one whole shuffled pass per step;
//! 2. forward (fused encoder, sparse decode), loss (+ AuxK over latents dead for more than
//!    `dead_after` samples), backward (sparse), W_dec's gradient loses its component along each
//!    row, Adam with lr * schedule(s + 1), then W_dec's rows back to unit norm (the reference
//!    renormalises at the start of the next step: the same weights reach every forward pass);
//! 3. samples since each latent last fired, logs every `log_every` steps, a checkpoint every
//!    `checkpoint_every` steps and at the end.
//!
//! A run is a pure function of its settings, its rows and its seed: data order, inits and every
//! kernel are deterministic, so the same seed gives the same weights bit for bit on the same
//! device, and a run resumed from a checkpoint equals an uninterrupted one.

use super::checkpoint::{self, LoadedState, Provenance, RevelioInfo, StateMeta, StateTensors};
use super::data::{permutation, Rows};
use super::loss::{auxk, main_loss, AuxConfig, AuxTerm, LossKind};
use super::metrics;
use super::model::{Init, Sae, SaeConfig, SaeParams};
use crate::ops;
use crate::ops::optim::{AdamConfig, AdamScalars};
use crate::progress::Progress;
use crate::rng;
use crate::tensor::{DType, Device, Tensor};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

/// How b_dec starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BDecInit {
    /// The mean of the first batch (Revelio's `initialize_b_dec_with_mean`).
    Mean,
    /// The geometric median of the first batch (Weiszfeld, at most 100 iterations; the
    /// openai/sdxl-unbox trainers' `init_from_data_`).
    Median,
    Zero,
}

impl BDecInit {
    pub fn parse(s: &str) -> Result<BDecInit> {
        match s {
            "mean" => Ok(BDecInit::Mean),
            "median" => Ok(BDecInit::Median),
            "zero" => Ok(BDecInit::Zero),
            _ => Err(Error::BadOption(format!("--b-dec-init {s}: expected mean, median or zero"))),
        }
    }
}

/// Learning-rate decay after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decay {
    /// Constant after the warm-up (Revelio's `constantwithwarmup`).
    None,
    /// From 1 at `decay_start * steps` down towards 0 at the last step.
    Linear,
    Cosine,
}

impl Decay {
    pub fn parse(s: &str) -> Result<Decay> {
        match s {
            "none" => Ok(Decay::None),
            "linear" => Ok(Decay::Linear),
            "cosine" => Ok(Decay::Cosine),
            _ => Err(Error::BadOption(format!("--decay {s}: expected none, linear or cosine"))),
        }
    }
}

/// Storage of Adam's moments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Moments {
    F32,
    Bf16,
}

impl Moments {
    pub fn parse(s: &str) -> Result<Moments> {
        match s {
            "f32" => Ok(Moments::F32),
            "bf16" => Ok(Moments::Bf16),
            _ => Err(Error::BadOption(format!("--moments {s}: expected f32 or bf16"))),
        }
    }

    pub fn dtype(self) -> DType {
        match self {
            Moments::F32 => DType::F32,
            Moments::Bf16 => DType::BF16,
        }
    }
}

/// Everything that shapes a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub k: usize,
    pub d_sae: usize,
    pub relu: bool,
    pub init: Init,
    pub b_dec_init: BDecInit,
    pub loss: LossKind,
    pub aux: AuxConfig,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub warmup: usize,
    pub decay: Decay,
    /// Fraction of the steps after which the decay starts.
    pub decay_start: f32,
    pub batch: usize,
    pub steps: usize,
    pub seed: u64,
    pub moments: Moments,
    /// Scale inputs so that E||x||^2 = d (SAELens' `expected_average_only_in`).
    pub scale_inputs: bool,
    pub checkpoint_every: usize,
    pub log_every: usize,
}

impl TrainConfig {
    /// Revelio's settings (train_ksae.py's command-line defaults) for inputs of dim `d`:
    /// k 32, 64 d latents, batch 8192, Adam lr 4e-4 with 500 warm-up steps, 10,240 steps,
    /// normalized MSE, no AuxK, no ReLU, seed 42.
    pub fn revelio(d: usize) -> TrainConfig {
        TrainConfig {
            k: 32,
            d_sae: 64 * d,
            relu: false,
            init: Init::Revelio,
            b_dec_init: BDecInit::Mean,
            loss: LossKind::Nmse,
            aux: AuxConfig { k: 0, coef: 1.0 / 32.0, dead_after: 10_000_000 },
            lr: 4e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            warmup: 500,
            decay: Decay::None,
            decay_start: 0.8,
            batch: 8192,
            steps: 10_240,
            seed: 42,
            moments: Moments::F32,
            scale_inputs: false,
            checkpoint_every: 1000,
            log_every: 10,
        }
    }

    pub fn validate(&self, d: usize) -> Result<()> {
        let bad = |m: String| Err(Error::BadOption(m));
        if self.batch == 0 || self.steps == 0 {
            return bad(format!("--batch {} and --steps {} must be positive", self.batch, self.steps));
        }
        if self.k == 0 || self.k > self.d_sae {
            return bad(format!("--k {} must be in 1..={} (the number of latents)", self.k, self.d_sae));
        }
        if !(self.lr > 0.0 && self.lr.is_finite() && (0.0..1.0).contains(&self.beta1) && (0.0..1.0).contains(&self.beta2)) {
            return bad(format!("lr {} must be positive and betas ({}, {}) in [0, 1)", self.lr, self.beta1, self.beta2));
        }
        if !(0.0..=1.0).contains(&self.decay_start) {
            return bad(format!("--decay-start {} must be in [0, 1]", self.decay_start));
        }
        if self.aux.k > 0 && !(self.aux.coef >= 0.0 && self.aux.coef.is_finite()) {
            return bad(format!("--aux-coef {} must be a non-negative number", self.aux.coef));
        }
        SaeConfig { d_in: d, d_sae: self.d_sae, k: self.k, relu: self.relu, input_scale: 1.0 }.validate()
    }

    /// The lr factor of update number `u` (1-based): Revelio's warm-up min(1, (u + 1) / warmup)
    /// (its scheduler steps before the optimizer, so the first update already uses 2/warmup),
    /// times the decay.
    pub fn lr_factor(&self, u: usize) -> f64 {
        let warm = if self.warmup > 0 { ((u + 1) as f64 / self.warmup as f64).min(1.0) } else { 1.0 };
        let t0 = (self.decay_start as f64 * self.steps as f64).floor() as usize;
        let decay = if u <= t0 || self.decay == Decay::None {
            1.0
        } else {
            let q = (u - t0 - 1) as f64 / (self.steps - t0).max(1) as f64;
            match self.decay {
                Decay::Linear => 1.0 - q,
                Decay::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * q).cos()),
                Decay::None => 1.0,
            }
        };
        warm * decay
    }

    fn adam(&self, u: usize) -> AdamScalars {
        let lr = (self.lr as f64 * self.lr_factor(u)) as f32;
        let cfg = AdamConfig { lr, beta1: self.beta1, beta2: self.beta2, eps: self.eps, weight_decay: 0.0, decoupled_weight_decay: false };
        AdamScalars::new(&cfg, u as u64)
    }
}

/// The state of a run between steps: all a checkpoint holds.
#[derive(Debug, Clone)]
pub struct TrainState {
    pub sae: Sae,
    pub m: SaeParams,
    pub v: SaeParams,
    pub adam_step: u64,
    /// i64 [n]: samples since each latent last had a nonzero code value.
    pub since: Tensor,
    /// Steps done.
    pub step: usize,
    pub samples_seen: u64,
    pub mse_scale: f64,
}

/// Options of one invocation (not part of the run's identity).
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Ignore a checkpoint in the output folder and start over.
    pub restart: bool,
    /// Stop after this many steps of this invocation without a final checkpoint, as if killed
    /// (tests interrupt and resume with it).
    pub stop_after: Option<usize>,
}

/// The loader: batch j of the sequence of seeded per-epoch permutations of the rows.
struct Loader {
    rows: usize,
    batch: usize,
    seed: u64,
    epoch: Option<(usize, Vec<usize>)>,
}

impl Loader {
    fn batches_per_epoch(&self) -> usize {
        self.rows.div_ceil(self.batch)
    }

    fn get(&mut self, j: usize) -> Vec<usize> {
        let bpe = self.batches_per_epoch();
        let (e, b) = (j / bpe, j % bpe);
        if self.epoch.as_ref().map(|(k, _)| *k) != Some(e) {
            self.epoch = Some((e, permutation(self.rows, rng::derive(self.seed, &[3, e as u64]))));
        }
        let perm = &self.epoch.as_ref().expect("set above").1;
        perm[b * self.batch..((b + 1) * self.batch).min(self.rows)].to_vec()
    }
}

/// The geometric median of the rows of x [rows, d] (Weiszfeld from the mean, at most 100
/// iterations, in f64).
pub fn geometric_median(x: &[f32], rows: usize, d: usize) -> Vec<f32> {
    let mut y: Vec<f64> = (0..d).map(|i| (0..rows).map(|r| x[r * d + i] as f64).sum::<f64>() / rows.max(1) as f64).collect();
    for _ in 0..100 {
        let mut num = vec![0.0f64; d];
        let mut den = 0.0f64;
        for r in 0..rows {
            let row = &x[r * d..(r + 1) * d];
            let dist = row.iter().zip(&y).map(|(&a, &b)| (a as f64 - b).powi(2)).sum::<f64>().sqrt().max(1e-12);
            let w = 1.0 / dist;
            den += w;
            for (n, &a) in num.iter_mut().zip(row) {
                *n += w * a as f64;
            }
        }
        let next: Vec<f64> = num.iter().map(|n| n / den).collect();
        let change = next.iter().zip(&y).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        let scale = next.iter().map(|a| a * a).sum::<f64>().sqrt();
        y = next;
        if change <= 1e-7 * (1.0 + scale) {
            break;
        }
    }
    y.into_iter().map(|v| v as f32).collect()
}

/// sqrt(d / mean over rows of ||x||^2), over all rows.
fn input_scale(rows: &Rows) -> Result<f32> {
    let mut ss = 0.0f64;
    let step = 8192;
    let mut start = 0;
    while start < rows.len() {
        let len = step.min(rows.len() - start);
        let x = rows.slice(start, len)?;
        ss += ops::sum_all(&ops::mul(&x, &x)?)?.to_scalar()? as f64;
        start += len;
    }
    let mean = ss / rows.len().max(1) as f64;
    if mean <= 0.0 {
        return Err(Error::BadInput("--scale-inputs: the features are all zero".into()));
    }
    Ok((rows.d() as f64 / mean).sqrt() as f32)
}

/// The identity of a run: a resumed run must match it. Read back from its text, as the
/// checkpoint's copy is (JSON floats may come back a bit off; both sides then agree).
fn run_identity(cfg: &TrainConfig, prov: &Provenance, rows: usize) -> Value {
    let mut c = serde_json::to_value(cfg).unwrap_or(Value::Null);
    if let Some(o) = c.as_object_mut() {
        o.remove("checkpoint_every");
        o.remove("log_every");
    }
    let v = json!({"train": c, "provenance": prov, "rows": rows});
    serde_json::to_string_pretty(&v).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(v)
}

/// The command-line option behind a key of the run's identity.
fn option_of(key: &str) -> String {
    match key {
        "eps" => "--adam-eps".into(),
        "d_sae" => "--expansion / --d-sae".into(),
        "aux" => "--aux-k / --aux-coef / --dead-after".into(),
        "source" => "--features / --input".into(),
        "holdout_images" => "--holdout".into(),
        "model" => "the features' model".into(),
        "rows" => "the number of training rows".into(),
        k => format!("--{}", k.replace('_', "-")),
    }
}

/// The options whose values differ between two identities (`run_identity`), as
/// "option: old -> new", with `steps` left out.
fn differing_options(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for section in ["train", "provenance"] {
        let (Some(a), Some(b)) = (old.get(section).and_then(Value::as_object), new.get(section).and_then(Value::as_object)) else {
            out.push(format!("{section}: unreadable in the checkpoint"));
            continue;
        };
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys.into_iter().filter(|k| k.as_str() != "steps") {
            if a.get(k) != b.get(k) {
                let show = |v: Option<&Value>| v.map_or("(none)".to_string(), Value::to_string);
                out.push(format!("{}: {} -> {}", option_of(k), show(a.get(k)), show(b.get(k))));
            }
        }
    }
    if old.get("rows") != new.get("rows") {
        out.push(format!("{}: {} -> {}", option_of("rows"), old["rows"], new["rows"]));
    }
    out
}

/// Errors unless resuming the checkpoint `meta` in `out` with `cfg` gives what a run started
/// with `cfg` gives: every setting the same but `--steps`, which may grow (extending a finished
/// run) as long as the steps already run keep their learning rate (always with `--decay none`;
/// with a decay, while the steps run are before its start under both step counts).
fn check_resumable(out: &Path, meta: &StateMeta, cfg: &TrainConfig, identity: &Value) -> Result<()> {
    let refuse = |why: String| {
        Err(Error::BadOption(format!(
            "{} holds a checkpoint of another run ({why}); pass --restart to start over, or use another --out",
            out.display()
        )))
    };
    let differ = differing_options(&meta.run, identity);
    if !differ.is_empty() {
        return refuse(differ.join("; "));
    }
    let old_steps = meta.run.pointer("/train/steps").and_then(Value::as_u64).map_or(cfg.steps, |s| s as usize);
    if cfg.steps < meta.step {
        return refuse(format!("--steps {}: it has already run {} steps of {old_steps}", cfg.steps, meta.step));
    }
    let old = TrainConfig { steps: old_steps, ..cfg.clone() };
    if let Some(u) = (1..=meta.step).find(|&u| old.lr_factor(u).to_bits() != cfg.lr_factor(u).to_bits()) {
        return refuse(format!(
            "--steps {old_steps} -> {}: step {u}, already run, would have another learning rate (--decay starts at --decay-start x --steps), so the result would differ from a run started with --steps {}",
            cfg.steps, cfg.steps
        ));
    }
    if cfg.steps != old_steps {
        eprintln!("sae train: extending {} from {old_steps} to {} steps (at step {})", out.display(), cfg.steps, meta.step);
    }
    Ok(())
}

fn fresh_state(cfg: &TrainConfig, rows: &Rows, loader: &mut Loader, device: &Device) -> Result<TrainState> {
    let d = rows.d();
    let scale = if cfg.scale_inputs { input_scale(rows)? } else { 1.0 };
    let sae_cfg = SaeConfig { d_in: d, d_sae: cfg.d_sae, k: cfg.k, relu: cfg.relu, input_scale: scale };
    let mut sae = Sae::init(sae_cfg, cfg.init, cfg.seed, device)?;
    let first = loader.get(0);
    let x0 = sae.scale_input(&rows.batch(&first)?)?;
    sae.params.b_dec = match cfg.b_dec_init {
        BDecInit::Mean => ops::mean(&x0, 0, false)?,
        BDecInit::Median => {
            let host = x0.to_f32_vec()?;
            Tensor::from_vec(geometric_median(&host, first.len(), d), [d], &Device::Cpu)?.to_device(device)?
        }
        BDecInit::Zero => Tensor::zeros([d], DType::F32, device)?,
    };
    let mse_scale = if cfg.loss == LossKind::ScaledMse {
        let (_, m2) = ops::sae::col_stats(&x0)?;
        let var = super::loss::host_sum(&m2)? / (first.len() * d) as f64;
        if var > 0.0 {
            1.0 / var
        } else {
            1.0
        }
    } else {
        1.0
    };
    let m = sae.params.zeros_like(cfg.moments.dtype())?;
    let v = sae.params.zeros_like(cfg.moments.dtype())?;
    let since = Tensor::zeros([cfg.d_sae], DType::I64, device)?;
    Ok(TrainState { sae, m, v, adam_step: 0, since, step: 0, samples_seen: 0, mse_scale })
}

fn resumed_state(cfg: &TrainConfig, d: usize, s: LoadedState) -> Result<TrainState> {
    let sae_cfg = SaeConfig { d_in: d, d_sae: cfg.d_sae, k: cfg.k, relu: cfg.relu, input_scale: f32::from_bits(s.meta.input_scale_bits) };
    Ok(TrainState {
        sae: Sae::from_params(sae_cfg, s.params)?,
        m: s.m,
        v: s.v,
        adam_step: s.meta.adam_step,
        since: s.since,
        step: s.meta.step,
        samples_seen: s.meta.samples_seen,
        mse_scale: f64::from_bits(s.meta.mse_scale_bits),
    })
}

fn save_checkpoint(out: &Path, st: &TrainState, identity: &Value) -> Result<()> {
    let meta = StateMeta {
        format: checkpoint::FORMAT.into(),
        step: st.step,
        adam_step: st.adam_step,
        samples_seen: st.samples_seen,
        mse_scale_bits: st.mse_scale.to_bits(),
        input_scale_bits: st.sae.cfg.input_scale.to_bits(),
        run: identity.clone(),
    };
    checkpoint::save_state(out, &StateTensors { params: &st.sae.params, m: &st.m, v: &st.v, since: &st.since }, &meta)
}

/// Writes the SAE (`sae_weights.safetensors`, `cfg.json`) of state `st`.
pub fn save_outputs(out: &Path, st: &TrainState, cfg: &TrainConfig, prov: &Provenance) -> Result<()> {
    let info = RevelioInfo {
        format: checkpoint::FORMAT.into(),
        relu: st.sae.cfg.relu,
        input_scale: st.sae.cfg.input_scale,
        provenance: prov.clone(),
        train: serde_json::to_value(cfg).unwrap_or(Value::Null),
        steps_done: st.step,
        samples_seen: st.samples_seen,
    };
    checkpoint::save_sae(out, &st.sae, &info)
}

/// Dead latents (since > dead_after), ascending, from a host copy of `since`.
fn dead_latents(since: &[i64], dead_after: u64) -> Vec<i32> {
    since.iter().enumerate().filter(|(_, &s)| s as u64 > dead_after).map(|(j, _)| j as i32).collect()
}

/// One training step on the batch x [B, d] (raw features, any float dtype, on the SAE's
/// device); with `log`, returns the numbers of a log line (this reads the code back to the host).
pub fn train_step(cfg: &TrainConfig, st: &mut TrainState, x: &Tensor, log: bool) -> Result<Option<Value>> {
    let xs = st.sae.scale_input(x)?;
    let batch = xs.dims()[0];
    let fwd = st.sae.forward(&xs)?;
    let (_, x_m2) = ops::sae::col_stats(&xs)?;
    let main = main_loss(cfg.loss, &fwd, &x_m2, st.mse_scale)?;
    let (r_sum, r_m2) = ops::sae::col_stats(&fwd.decoded.resid)?;
    let since_host = if cfg.aux.k > 0 || log { Some(st.since.to_vec::<i64>()?) } else { None };
    let aux = match (&since_host, cfg.aux.k > 0) {
        (Some(s), true) => auxk(&st.sae, &fwd, &dead_latents(s, cfg.aux.dead_after), &cfg.aux, &r_m2)?,
        _ => None,
    };
    let grads = st.sae.backward(&fwd, main.c, &r_sum, aux.as_ref().map(AuxTerm::backward))?;
    let u = st.adam_step + 1;
    st.sae.adam_step(&grads, &mut st.m, &mut st.v, &cfg.adam(u as usize))?;
    st.adam_step = u;
    ops::sae::update_since(&mut st.since, &fwd.code)?;
    st.step += 1;
    st.samples_seen += batch as u64;
    if !log {
        return Ok(None);
    }
    let l0 = metrics::l0(&fwd.code)?;
    let dead = since_host.as_deref().map_or(0.0, |s| metrics::dead_fraction(s, cfg.aux.dead_after));
    let fvu = if main.var > 0.0 { main.sse / main.var } else { 0.0 };
    Ok(Some(json!({
        "step": st.step,
        "samples": st.samples_seen,
        "lr": cfg.lr as f64 * cfg.lr_factor(u as usize),
        "loss": main.loss,
        "aux_loss": aux.as_ref().map_or(0.0, |a| a.loss),
        "fvu": fvu,
        "l0": l0,
        "dead_fraction": dead,
    })))
}

/// Trains an SAE on `rows` into `out` (resuming from a checkpoint there unless
/// `opts.restart`), writing the SAE, checkpoints and the log. Returns the final state.
pub fn train(cfg: &TrainConfig, rows: &Rows, out: &Path, prov: &Provenance, opts: &TrainOptions) -> Result<TrainState> {
    let d = rows.d();
    cfg.validate(d)?;
    if rows.is_empty() {
        return Err(Error::BadOption("no training rows (check --split and --holdout)".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let device = rows.x.device();
    let identity = run_identity(cfg, prov, rows.len());
    let mut loader = Loader { rows: rows.len(), batch: cfg.batch, seed: cfg.seed, epoch: None };
    let mut st = if checkpoint::has_state(out) && !opts.restart {
        let meta = checkpoint::load_state_meta(out)?;
        check_resumable(out, &meta, cfg, &identity)?;
        let step = meta.step;
        let s = checkpoint::load_state(out, meta, d, cfg.d_sae, cfg.moments.dtype(), &device)?;
        checkpoint::truncate_log(out, step)?;
        resumed_state(cfg, d, s)?
    } else {
        checkpoint::truncate_log(out, 0)?;
        fresh_state(cfg, rows, &mut loader, &device)?
    };
    let mut progress = Progress::new("sae train", cfg.steps as u64, "step");
    progress.set_position(st.step as u64);
    let start = Instant::now();
    let mut ran = 0;
    while st.step < cfg.steps {
        if opts.stop_after.is_some_and(|n| ran >= n) {
            return Ok(st);
        }
        let idx = loader.get(st.step + 1);
        let log = (st.step + 1) % cfg.log_every.max(1) == 0 || st.step + 1 == cfg.steps;
        if let Some(mut line) = train_step(cfg, &mut st, &rows.batch(&idx)?, log)? {
            line["time_s"] = json!(start.elapsed().as_secs_f64());
            progress.set_message(format!(
                "loss {:.4} fvu {:.4} L0 {:.1} dead {:.1}%",
                line["loss"].as_f64().unwrap_or(0.0),
                line["fvu"].as_f64().unwrap_or(0.0),
                line["l0"].as_f64().unwrap_or(0.0),
                100.0 * line["dead_fraction"].as_f64().unwrap_or(0.0)
            ));
            checkpoint::append_log(out, &line)?;
        }
        progress.inc(1);
        ran += 1;
        if st.step % cfg.checkpoint_every.max(1) == 0 && st.step < cfg.steps {
            save_checkpoint(out, &st, &identity)?;
        }
    }
    progress.finish();
    save_checkpoint(out, &st, &identity)?;
    save_outputs(out, &st, cfg, prov)?;
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_matches_revelios_scheduler_order() {
        let cfg = TrainConfig::revelio(8);
        assert_eq!(cfg.lr_factor(1), 2.0 / 500.0);
        assert_eq!(cfg.lr_factor(499), 1.0);
        assert_eq!(cfg.lr_factor(10_240), 1.0);
        let lin = TrainConfig { decay: Decay::Linear, steps: 100, warmup: 0, decay_start: 0.5, ..cfg };
        assert_eq!(lin.lr_factor(50), 1.0);
        assert_eq!(lin.lr_factor(51), 1.0);
        assert!((lin.lr_factor(100) - 0.02).abs() < 1e-12);
    }

    #[test]
    fn geometric_median_of_a_line_is_its_middle_point() {
        // Points 0, 1, 10 on a line: the median is 1 (the mean would be 11/3).
        let m = geometric_median(&[0.0, 0.0, 1.0, 0.0, 10.0, 0.0], 3, 2);
        assert!((m[0] - 1.0).abs() < 1e-3 && m[1].abs() < 1e-6, "{m:?}");
    }
}
