//! Training Diff-C as the reference's train.py does: cross-entropy, AdamW (lr 1e-4, weight decay
//! 0.01, betas 0.9/0.999, eps 1e-8, every parameter decayed), CosineAnnealingLR stepped once per
//! epoch, batch 16 over a shuffled train split, top-1 on the test split after every epoch. The
//! reference runs 30 epochs of a 90-epoch cosine: `epochs = 30, cosine_epochs = 90`.
//!
//! The run folder holds `config.json`, `metrics.jsonl` (one line per epoch), `classifier.safetensors`
//! (the last epoch's state dict, PyTorch's names), `classifier_best.safetensors` (the epoch with the
//! best test top-1), `checkpoint.safetensors` (state dict, AdamW moments, epoch and best, rewritten
//! every epoch) and `summary.json`. Every random draw (init, shuffling, dropout masks) comes from
//! the counter-based generator keyed by (seed, epoch, step), so a resumed run continues exactly
//! where an uninterrupted one would have been: bit for bit on the CPU.

use super::data::{class_count, FeatureSource, Split};
use super::eval::predict;
use super::model::{DiffcClassifier, DiffcConfig, Grads};
use crate::io::{save_safetensors, write_atomic, SafeTensorsFile};
use crate::ops::{adam_step, argmax, cross_entropy, cross_entropy_backward, AdamConfig, AdamState};
use crate::progress::Progress;
use crate::tensor::{DType, Device, Tensor};
use crate::{rng, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const RUN_FORMAT: &str = "revelio-diffc-1";
pub const CONFIG: &str = "config.json";
pub const METRICS: &str = "metrics.jsonl";
pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const WEIGHTS: &str = "classifier.safetensors";
pub const BEST_WEIGHTS: &str = "classifier_best.safetensors";
pub const SUMMARY: &str = "summary.json";

/// Streams of the run's seed: `rng::derive(seed, [STREAM, ...])`.
const INIT_STREAM: u64 = 0;
const SHUFFLE_STREAM: u64 = 1;
const DROPOUT_STREAM: u64 = 2;

/// How to train. The defaults of the CLI are the reference's, except `cosine_epochs`, which
/// defaults to `epochs` (the reference: 30 of 90).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    /// T_max of CosineAnnealingLR (eta_min 0).
    pub cosine_epochs: usize,
    pub lr: f32,
    pub weight_decay: f32,
    pub batch_size: usize,
    /// The test split's batch (the reference: 2 x batch_size; any value gives the same result).
    pub test_batch_size: usize,
    pub seed: u64,
    /// Compute dtype of the forward and backward passes: `f32`, or `bf16` / `f16` on CUDA.
    /// Parameters, running stats and optimizer state stay f32.
    pub dtype: String,
}

impl TrainConfig {
    pub fn validate(&self, device: &Device) -> Result<DType> {
        let bad = |m: String| Err(Error::BadOption(format!("diffc train: {m}")));
        if self.epochs == 0 || self.cosine_epochs == 0 {
            return bad(format!("epochs ({}) and cosine epochs ({}) must be >= 1", self.epochs, self.cosine_epochs));
        }
        if self.batch_size == 0 || self.test_batch_size == 0 {
            return bad(format!("batch sizes ({}, test {}) must be >= 1", self.batch_size, self.test_batch_size));
        }
        if !(self.lr > 0.0 && self.lr.is_finite() && self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!("lr {} must be > 0 and weight decay {} >= 0", self.lr, self.weight_decay));
        }
        parse_dtype(&self.dtype, device)
    }
}

/// `f32`, `bf16` or `f16`; 16-bit compute only on CUDA (the CPU backend computes in f32).
pub fn parse_dtype(s: &str, device: &Device) -> Result<DType> {
    let dt = DType::parse(s).filter(|d| d.is_float()).ok_or_else(|| Error::BadOption(format!("--dtype {s}: expected f32, bf16 or f16")))?;
    if dt != DType::F32 && device.is_cpu() {
        return Err(Error::BadOption(format!("--dtype {s}: the CPU backend computes in f32; use --dtype f32 or a CUDA device")));
    }
    Ok(dt)
}

/// The lr of epoch `epoch` (0-based) under CosineAnnealingLR(T_max = `t_max`, eta_min = 0)
/// stepped once per epoch: base * (1 + cos(pi * epoch / t_max)) / 2, in f64. (torch computes
/// the same curve by a recurrence; the two agree to ~1e-16 relative.)
pub fn cosine_lr(base: f32, epoch: usize, t_max: usize) -> f32 {
    let x = std::f64::consts::PI * epoch as f64 / t_max as f64;
    (base as f64 * (1.0 + x.cos()) / 2.0) as f32
}

/// A seeded permutation of 0..n for `epoch` (Fisher-Yates on the counter-based generator).
pub fn shuffle(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let s = rng::derive(seed, &[SHUFFLE_STREAM, epoch as u64]);
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        // A uniform j in 0..=i by a 64 x 64 -> 128-bit multiply.
        let j = ((rng::bits(s, i as u64) as u128 * (i as u128 + 1)) >> 64) as usize;
        v.swap(i, j);
    }
    v
}

/// AdamW over the classifier's parameters: one state per parameter, in `param_names` order.
pub struct AdamW {
    pub states: Vec<AdamState>,
}

impl AdamW {
    pub fn new(model: &mut DiffcClassifier) -> Result<AdamW> {
        Ok(AdamW { states: model.params_mut().into_iter().map(|p| AdamState::new(p)).collect::<Result<_>>()? })
    }

    /// One step of every parameter with its gradient.
    pub fn step(&mut self, model: &mut DiffcClassifier, grads: &Grads, cfg: &AdamConfig) -> Result<()> {
        let named = grads.named();
        let params = model.params_mut();
        if params.len() != named.len() || params.len() != self.states.len() {
            return Err(Error::Internal(format!(
                "AdamW: {} parameters, {} gradients, {} optimizer states",
                params.len(),
                named.len(),
                self.states.len()
            )));
        }
        for ((p, (_, g)), s) in params.into_iter().zip(named).zip(&mut self.states) {
            adam_step(p, g, s, cfg)?;
        }
        Ok(())
    }
}

/// What a finished (or already complete) run reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSummary {
    pub epochs: usize,
    pub last_epoch: usize,
    pub last_test_accuracy: f64,
    pub last_train_loss: f64,
    /// 1-based epoch with the highest test top-1 (the first on ties).
    pub best_epoch: usize,
    pub best_test_accuracy: f64,
    pub num_params: usize,
    pub num_classes: usize,
    pub train_images: usize,
    pub test_images: usize,
}

/// One line of metrics.jsonl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based, as the reference logs it.
    pub epoch: usize,
    pub lr: f32,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
    pub best_epoch: usize,
    pub best_test_accuracy: f64,
    pub train_images_per_s: f64,
    pub seconds: f64,
}

/// Where a run stands after `epochs_done` epochs.
struct Progressed {
    model: DiffcClassifier,
    opt: AdamW,
    epochs_done: usize,
    best_epoch: usize,
    best_accuracy: f64,
}

fn meta_num<T: std::str::FromStr>(meta: &HashMap<String, String>, key: &str, path: &Path) -> Result<T> {
    meta.get(key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Error::format(path, format!("checkpoint metadata `{key}` is missing or not a number")))
}

fn save_checkpoint(path: &Path, p: &Progressed, config: &serde_json::Value) -> Result<()> {
    let mut tensors = p.model.state_dict()?;
    for (name, s) in p.model.param_names().into_iter().zip(&p.opt.states) {
        tensors.push((format!("optimizer.{name}.exp_avg"), s.m.clone()));
        tensors.push((format!("optimizer.{name}.exp_avg_sq"), s.v.clone()));
    }
    let meta = HashMap::from([
        ("format".to_string(), RUN_FORMAT.to_string()),
        ("epochs_done".to_string(), p.epochs_done.to_string()),
        ("adam_step".to_string(), p.opt.states.first().map_or(0, |s| s.step).to_string()),
        ("best_epoch".to_string(), p.best_epoch.to_string()),
        ("best_test_accuracy".to_string(), p.best_accuracy.to_string()),
        ("config".to_string(), config.to_string()),
    ]);
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    save_safetensors(path, &refs, Some(meta))
}

fn load_checkpoint(path: &Path, dropout: f32, device: &Device) -> Result<Progressed> {
    let file = SafeTensorsFile::open(path)?;
    let meta = file.metadata();
    if meta.get("format").map(String::as_str) != Some(RUN_FORMAT) {
        return Err(Error::format(path, format!("not a Diff-C checkpoint of format {RUN_FORMAT} (metadata {:?})", meta.get("format"))));
    }
    let mut all = file.load_all(&Device::Cpu)?;
    let opt_keys: Vec<String> = all.keys().filter(|k| k.starts_with("optimizer.")).cloned().collect();
    let mut opt_tensors: HashMap<String, Tensor> = opt_keys.iter().map(|k| (k.clone(), all.remove(k).expect("listed"))).collect();
    let mut model = DiffcClassifier::from_state_dict(&all, dropout, device, &path.display().to_string())?;
    let step: u64 = meta_num(&meta, "adam_step", path)?;
    let mut states = Vec::new();
    for name in model.param_names() {
        let mut take = |which: &str| {
            let key = format!("optimizer.{name}.{which}");
            opt_tensors.remove(&key).ok_or_else(|| Error::format(path, format!("checkpoint has no `{key}`")))?.to_device(device)
        };
        states.push(AdamState { m: take("exp_avg")?, v: take("exp_avg_sq")?, step });
    }
    let names = model.param_names();
    for ((s, p), name) in states.iter().zip(model.params_mut()).zip(names) {
        if s.m.shape() != p.shape() || s.v.shape() != p.shape() {
            return Err(Error::format(path, format!("optimizer state of `{name}` has shape {}, the parameter {}", s.m.shape(), p.shape())));
        }
    }
    if let Some(extra) = opt_tensors.keys().next() {
        return Err(Error::format(path, format!("unexpected checkpoint tensor `{extra}`")));
    }
    Ok(Progressed {
        model,
        opt: AdamW { states },
        epochs_done: meta_num(&meta, "epochs_done", path)?,
        best_epoch: meta_num(&meta, "best_epoch", path)?,
        best_accuracy: meta_num(&meta, "best_test_accuracy", path)?,
    })
}

/// The run's config.json content.
fn run_config(model: &DiffcConfig, cfg: &TrainConfig, source: &dyn FeatureSource) -> serde_json::Value {
    json!({
        "format": RUN_FORMAT,
        "model": model,
        "train": cfg,
        "source": source.describe(),
        "feature_shape": source.feature_shape(),
        "class_names": source.class_names(),
    })
}

/// Errors unless a folder's existing config matches this run's in everything but the number of
/// epochs (so a finished run can be extended).
fn check_resumable(dir: &Path, old: &serde_json::Value, new: &serde_json::Value) -> Result<()> {
    let strip = |v: &serde_json::Value| {
        let mut v = v.clone();
        if let Some(t) = v.get_mut("train").and_then(|t| t.as_object_mut()) {
            t.remove("epochs");
        }
        v
    };
    let (a, b) = (strip(old), strip(new));
    if a == b {
        return Ok(());
    }
    let mut differ = Vec::new();
    if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
        for (k, v) in b {
            if a.get(k) != Some(v) {
                differ.push(format!("{k}: {} -> {v}", a.get(k).map_or("(none)".into(), |x| x.to_string())));
            }
        }
    }
    Err(Error::BadOption(format!(
        "{} holds a Diff-C run with other settings ({}); use another --out folder or delete it",
        dir.display(),
        differ.join("; ")
    )))
}

/// Labels of items as an i64 tensor on `device`.
pub fn label_tensor(labels: &[i64], items: &[usize], device: &Device) -> Result<Tensor> {
    Tensor::from_vec(items.iter().map(|&i| labels[i]).collect::<Vec<i64>>(), [items.len()], device)
}

/// The classifier's options; Cin comes from the features.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOptions {
    /// Output channels of conv1..convD (the reference: [1024; 4]).
    pub widths: Vec<usize>,
    pub dropout: f32,
    /// K; None reads it from the source (`class_count`).
    pub num_classes: Option<usize>,
}

/// Trains a classifier on `source` into `out`, or resumes the run there. Returns the last and
/// best epochs' results.
pub fn train(source: &mut dyn FeatureSource, opts: &ModelOptions, cfg: &TrainConfig, out: &Path, device: &Device) -> Result<TrainSummary> {
    let dtype = cfg.validate(device)?;
    let k = class_count(source, opts.num_classes)?;
    let [cin, h, w] = source.feature_shape();
    let dropout = opts.dropout;
    let model_cfg = DiffcConfig { in_channels: cin, num_classes: k, widths: opts.widths.clone(), dropout };
    model_cfg.validate()?;
    let config = run_config(&model_cfg, cfg, source);
    let config_path = out.join(CONFIG);
    if config_path.exists() {
        let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let old: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::format(&config_path, format!("not JSON: {e}")))?;
        check_resumable(out, &old, &config)?;
    }
    write_atomic(&config_path, serde_json::to_string_pretty(&config).expect("JSON").as_bytes())?;

    let ckpt_path = out.join(CHECKPOINT);
    let mut run = if ckpt_path.exists() {
        let r = load_checkpoint(&ckpt_path, dropout, device)?;
        if r.model.config != model_cfg {
            return Err(Error::format(&ckpt_path, format!("holds a classifier {:?}, this run builds {:?}", r.model.config, model_cfg)));
        }
        eprintln!("diffc: resuming {} after epoch {}", out.display(), r.epochs_done);
        r
    } else {
        let mut model = DiffcClassifier::new(model_cfg.clone(), rng::derive(cfg.seed, &[INIT_STREAM]), device)?;
        let opt = AdamW::new(&mut model)?;
        Progressed { model, opt, epochs_done: 0, best_epoch: 0, best_accuracy: f64::NEG_INFINITY }
    };
    // Lines of epochs the checkpoint holds are kept as written (JSON floats are parsed to within
    // an ulp, so they are not re-serialised); later ones are dropped and recomputed.
    let mut metrics: Vec<(EpochMetrics, String)> = read_metrics_lines(&out.join(METRICS))?;
    metrics.retain(|(m, _)| m.epoch <= run.epochs_done);
    let joined = |ms: &[(EpochMetrics, String)]| ms.iter().map(|(_, l)| format!("{l}\n")).collect::<String>();
    write_atomic(&out.join(METRICS), joined(&metrics).as_bytes())?;

    let train_labels = source.labels(Split::Train).to_vec();
    let n_train = train_labels.len();
    // torch's BatchNorm refuses a batch with one value per channel (a last batch of one image
    // when a block's output is 1x1); such a batch is skipped (docs/diffc.md).
    let min_hw = model_cfg.block_sizes(h, w).iter().map(|&(a, b)| a * b).chain([h * w]).min().unwrap_or(1);
    for epoch in run.epochs_done..cfg.epochs {
        let start = Instant::now();
        let lr = cosine_lr(cfg.lr, epoch, cfg.cosine_epochs);
        let adam = AdamConfig { weight_decay: cfg.weight_decay, ..AdamConfig::adamw(lr) };
        let order = shuffle(n_train, cfg.seed, epoch);
        let mut bar = Progress::new(&format!("diffc epoch {}/{}", epoch + 1, cfg.epochs), n_train as u64, "img");
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for (step, items) in order.chunks(cfg.batch_size).enumerate() {
            if items.len() * min_hw < 2 {
                eprintln!("diffc: skipping a last batch of {} image(s): BatchNorm needs two values per channel", items.len());
                bar.inc(items.len() as u64);
                continue;
            }
            let x = source.features(Split::Train, epoch, items, dtype, device)?;
            let labels = label_tensor(&train_labels, items, device)?;
            let seed = rng::derive(cfg.seed, &[DROPOUT_STREAM, epoch as u64, step as u64]);
            let (logits, cache) = run.model.forward_train(&x, seed)?;
            let (loss, probs) = cross_entropy(&logits, &labels)?;
            let dlogits = cross_entropy_backward(&probs, &labels, 1.0)?;
            let grads = run.model.backward(&dlogits, &cache)?;
            run.opt.step(&mut run.model, &grads, &adam)?;
            let pred = argmax(&logits, -1)?.to_vec::<i64>()?;
            correct += pred.iter().zip(items).filter(|(p, &i)| **p == train_labels[i]).count();
            loss_sum += loss.to_scalar()? as f64 * items.len() as f64;
            seen += items.len();
            bar.inc(items.len() as u64);
            bar.set_message(format!("loss {:.4} acc {:.3}", loss_sum / seen as f64, correct as f64 / seen as f64));
        }
        bar.finish();
        let train_secs = start.elapsed().as_secs_f64();
        let test = predict(&run.model, source, Split::Test, epoch, cfg.test_batch_size, dtype, device)?;
        let test_acc = test.accuracy();
        run.epochs_done = epoch + 1;
        if test_acc > run.best_accuracy {
            run.best_accuracy = test_acc;
            run.best_epoch = epoch + 1;
            run.model.save(&out.join(BEST_WEIGHTS), weights_meta(&config, epoch + 1))?;
        }
        let m = EpochMetrics {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            test_loss: test.loss,
            test_accuracy: test_acc,
            best_epoch: run.best_epoch,
            best_test_accuracy: run.best_accuracy,
            train_images_per_s: seen as f64 / train_secs.max(1e-9),
            seconds: start.elapsed().as_secs_f64(),
        };
        eprintln!(
            "diffc epoch {}/{}: lr {:.3e} | train loss {:.4} acc {:.4} | test loss {:.4} acc {:.4} | best {:.4} (epoch {}) | {:.1} img/s",
            m.epoch,
            cfg.epochs,
            m.lr,
            m.train_loss,
            m.train_accuracy,
            m.test_loss,
            m.test_accuracy,
            m.best_test_accuracy,
            m.best_epoch,
            m.train_images_per_s
        );
        run.model.save(&out.join(WEIGHTS), weights_meta(&config, epoch + 1))?;
        // The metrics line first, then the checkpoint: a crash in between leaves a line that a
        // resume drops and recomputes.
        let line = serde_json::to_string(&m).expect("JSON");
        metrics.push((m, line));
        write_atomic(&out.join(METRICS), joined(&metrics).as_bytes())?;
        save_checkpoint(&ckpt_path, &run, &config)?;
    }
    let (last, _) = metrics.last().ok_or_else(|| Error::Internal(format!("{}: no epoch finished", out.display())))?;
    let summary = TrainSummary {
        epochs: run.epochs_done,
        last_epoch: last.epoch,
        last_test_accuracy: last.test_accuracy,
        last_train_loss: last.train_loss,
        best_epoch: run.best_epoch,
        best_test_accuracy: run.best_accuracy,
        num_params: model_cfg.num_params(),
        num_classes: k,
        train_images: n_train,
        test_images: source.labels(Split::Test).len(),
    };
    write_atomic(&out.join(SUMMARY), serde_json::to_string_pretty(&summary).expect("JSON").as_bytes())?;
    Ok(summary)
}

fn weights_meta(config: &serde_json::Value, epoch: usize) -> HashMap<String, String> {
    HashMap::from([
        ("format".to_string(), RUN_FORMAT.to_string()),
        ("epoch".to_string(), epoch.to_string()),
        ("config".to_string(), config.to_string()),
    ])
}

/// The lines of a metrics.jsonl, parsed and as written (none when the file does not exist).
fn read_metrics_lines(path: &Path) -> Result<Vec<(EpochMetrics, String)>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let m = serde_json::from_str(l).map_err(|e| Error::format(path, format!("line {}: {e}", i + 1)))?;
            Ok((m, l.to_string()))
        })
        .collect()
}

/// The epochs of a metrics.jsonl (none when the file does not exist).
pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>> {
    Ok(read_metrics_lines(path)?.into_iter().map(|(m, _)| m).collect())
}

/// A run folder's config.json.
pub fn read_run_config(dir: &Path) -> Result<serde_json::Value> {
    let path: PathBuf = dir.join(CONFIG);
    if !path.is_file() {
        return Err(Error::BadInput(format!(
            "{}: not a Diff-C run folder (no {CONFIG}; `revelio diffc train --out DIR` writes one)",
            dir.display()
        )));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::format(&path, format!("not JSON: {e}")))?;
    if v.get("format").and_then(|f| f.as_str()) != Some(RUN_FORMAT) {
        return Err(Error::format(&path, format!("not a Diff-C run config (format {RUN_FORMAT})")));
    }
    Ok(v)
}
