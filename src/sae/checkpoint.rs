//! What an SAE run leaves in its folder:
//! - `sae_weights.safetensors`: W_enc [d, n], b_enc [n], W_dec [n, d], b_dec [d] (f32), plus
//!   `input_scale` [1] when inputs were scaled;
//! - `cfg.json`: SAELens' config keys where they apply (architecture, d_in, d_sae, k,
//!   activation_fn_str, apply_b_dec_to_input, normalize_activations, model_name, hook_name,
//!   dataset_path...) and a `revelio` section: the ReLU flag, the input scale, where the
//!   features came from and how the SAE was trained;
//! - `checkpoint.safetensors`: everything a resumed run needs in one file, written atomically
//!   (temporary file, fsync, rename), so it is complete or absent: the parameters, Adam's moments
//!   and samples since each latent fired as tensors, the step counters and the run's settings as
//!   JSON in the header's metadata (`state`), as Diff-C's checkpoint does. Folders written before
//!   this format also have `checkpoint.json` beside a checkpoint with no `state`; both are read,
//!   and the next checkpoint replaces them;
//! - `train_log.jsonl`: one JSON object per logged step.

use super::data::RowKind;
use super::model::{Sae, SaeConfig, SaeParams};
use crate::io::{save_safetensors, write_atomic, SafeTensorsFile};
use crate::tensor::{DType, Device, Tensor};
use crate::{Context, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

pub const WEIGHTS: &str = "sae_weights.safetensors";
pub const CONFIG: &str = "cfg.json";
pub const STATE: &str = "checkpoint.safetensors";
/// The metadata file of checkpoints written before the step counters moved into the header.
pub const LEGACY_STATE_META: &str = "checkpoint.json";
/// The header metadata key holding [`StateMeta`] as JSON.
const STATE_KEY: &str = "state";
pub const LOG: &str = "train_log.jsonl";
pub const FORMAT: &str = "revelio-sae-1";

/// Where the training rows came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The feature store folder, or the safetensors file.
    pub source: String,
    /// The tensor of a safetensors source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor: Option<String>,
    /// The diffusion model the features came from (the store's manifest), if known.
    #[serde(default)]
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestep: Option<usize>,
    pub rows: RowKind,
    /// The store split trained on ("" = all).
    #[serde(default)]
    pub split: String,
    /// Images of that split held out of training (for `sae eval`).
    #[serde(default)]
    pub holdout_images: Vec<usize>,
}

/// The `revelio` section of cfg.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevelioInfo {
    pub format: String,
    /// ReLU before the top-k.
    pub relu: bool,
    pub input_scale: f32,
    pub provenance: Provenance,
    /// The training settings (`train::TrainConfig` as JSON).
    #[serde(default)]
    pub train: Value,
    #[serde(default)]
    pub steps_done: usize,
    #[serde(default)]
    pub samples_seen: u64,
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    write_atomic(path, text.as_bytes())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, format!("{e}")))
}

/// Writes `sae_weights.safetensors` and `cfg.json` into `dir`.
pub fn save_sae(dir: &Path, sae: &Sae, info: &RevelioInfo) -> Result<()> {
    let mut named: Vec<(&str, &Tensor)> = sae.params.named().to_vec();
    let scale = Tensor::from_vec(vec![sae.cfg.input_scale], [1], &Device::Cpu)?;
    if sae.cfg.input_scale != 1.0 {
        named.push(("input_scale", &scale));
    }
    save_safetensors(dir.join(WEIGHTS), &named, None)?;
    let p = &info.provenance;
    let cfg = json!({
        "architecture": "topk",
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "k": sae.cfg.k,
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": sae.cfg.k},
        "apply_b_dec_to_input": true,
        "normalize_activations": if sae.cfg.input_scale != 1.0 { "expected_average_only_in" } else { "none" },
        "dtype": "float32",
        "device": "cpu",
        "model_name": p.model,
        "hook_name": p.layer.clone().unwrap_or_default(),
        "dataset_path": p.source,
        "context_size": Value::Null,
        "prepend_bos": false,
        "finetuning_scaling_factor": false,
        "revelio": info,
    });
    write_json(&dir.join(CONFIG), &cfg)
}

/// Loads an SAE folder (`sae_weights.safetensors` + `cfg.json`) onto `device`.
pub fn load_sae(dir: &Path, device: &Device) -> Result<(Sae, RevelioInfo)> {
    let cfg_path = dir.join(CONFIG);
    if !cfg_path.is_file() {
        let hint = if dir.join(STATE).is_file() { "; training has not finished: rerun the same `revelio sae train` to resume" } else { "" };
        return Err(Error::BadInput(format!(
            "--sae {}: not an SAE folder (no {CONFIG}; `revelio sae train --out DIR` writes {CONFIG} and {WEIGHTS} there){hint}",
            dir.display()
        )));
    }
    let cfg: Value = read_json(&cfg_path)?;
    let get = |k: &str| cfg.get(k).and_then(Value::as_u64).map(|v| v as usize);
    let arch = cfg.get("architecture").and_then(Value::as_str).unwrap_or("topk");
    if arch != "topk" {
        return Err(Error::format(&cfg_path, format!("architecture `{arch}`: revelio loads TopK SAEs only")));
    }
    let (d_in, d_sae) = match (get("d_in"), get("d_sae")) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err(Error::format(&cfg_path, "needs d_in and d_sae")),
    };
    let k = get("k")
        .or_else(|| cfg.pointer("/activation_fn_kwargs/k").and_then(Value::as_u64).map(|v| v as usize))
        .ok_or_else(|| Error::format(&cfg_path, "needs k (or activation_fn_kwargs.k)"))?;
    let info: RevelioInfo = match cfg.get("revelio") {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| Error::format(&cfg_path, format!("revelio section: {e}")))?,
        None => RevelioInfo {
            format: FORMAT.into(),
            relu: true,
            input_scale: 1.0,
            provenance: Provenance {
                source: String::new(),
                tensor: None,
                model: cfg.get("model_name").and_then(Value::as_str).unwrap_or_default().into(),
                layer: cfg.get("hook_name").and_then(Value::as_str).map(String::from),
                timestep: None,
                rows: RowKind::Image,
                split: String::new(),
                holdout_images: vec![],
            },
            train: Value::Null,
            steps_done: 0,
            samples_seen: 0,
        },
    };
    let wpath = dir.join(WEIGHTS);
    let f = SafeTensorsFile::open(&wpath)?;
    let load = |key: &str, shape: &[usize]| f.load_shaped(key, shape, DType::F32, device);
    let params = SaeParams {
        w_enc: load("W_enc", &[d_in, d_sae])?,
        b_enc: load("b_enc", &[d_sae])?,
        w_dec: load("W_dec", &[d_sae, d_in])?,
        b_dec: load("b_dec", &[d_in])?,
    };
    let input_scale = if f.contains("input_scale") { f.load_shaped("input_scale", &[1], DType::F32, &Device::Cpu)?.to_scalar()? } else { info.input_scale };
    let sae_cfg = SaeConfig { d_in, d_sae, k, relu: info.relu, input_scale };
    let sae = Sae::from_params(sae_cfg, params).with_context(|| format!("{}", dir.display()))?;
    Ok((sae, info))
}

/// Step counters and constants of a training run, beside the checkpoint tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateMeta {
    pub format: String,
    /// Steps done (the next step to run).
    pub step: usize,
    pub adam_step: u64,
    pub samples_seen: u64,
    /// The scaled-MSE constant (f64) and the input scale (f32) as their bits: JSON floats do
    /// not always read back to the same bits, and a resume must be exact.
    pub mse_scale_bits: u64,
    pub input_scale_bits: u32,
    /// The run's settings and provenance; a resume must match them.
    pub run: Value,
}

/// The tensors of a training checkpoint.
pub struct StateTensors<'a> {
    pub params: &'a SaeParams,
    pub m: &'a SaeParams,
    pub v: &'a SaeParams,
    /// i64 [n].
    pub since: &'a Tensor,
}

/// Writes the checkpoint, tensors and metadata in one file, then drops a legacy
/// `checkpoint.json` (the new file's own metadata takes precedence over it when both exist).
pub fn save_state(dir: &Path, t: &StateTensors, meta: &StateMeta) -> Result<()> {
    let mut named: Vec<(String, &Tensor)> = Vec::new();
    for (prefix, p) in [("", t.params), ("adam_m.", t.m), ("adam_v.", t.v)] {
        for (k, v) in p.named() {
            named.push((format!("{prefix}{k}"), v));
        }
    }
    named.push(("since_fired".into(), t.since));
    let refs: Vec<(&str, &Tensor)> = named.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let path = dir.join(STATE);
    let text = serde_json::to_string(meta).map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    let header = HashMap::from([("format".to_string(), FORMAT.to_string()), (STATE_KEY.to_string(), text)]);
    save_safetensors(&path, &refs, Some(header))?;
    let legacy = dir.join(LEGACY_STATE_META);
    match std::fs::remove_file(&legacy) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&legacy, e)),
        _ => Ok(()),
    }
}

/// A checkpoint read back: metadata, parameters, moments, since.
pub struct LoadedState {
    pub meta: StateMeta,
    pub params: SaeParams,
    pub m: SaeParams,
    pub v: SaeParams,
    pub since: Tensor,
}

/// Whether `dir` holds a training checkpoint.
pub fn has_state(dir: &Path) -> bool {
    dir.join(STATE).exists()
}

/// The step counters and settings of the checkpoint in `dir`: from the header's metadata, or
/// from a legacy `checkpoint.json` beside a checkpoint without it.
pub fn load_state_meta(dir: &Path) -> Result<StateMeta> {
    let path = dir.join(STATE);
    let f = SafeTensorsFile::open(&path)?;
    if let Some(text) = f.metadata().get(STATE_KEY) {
        return serde_json::from_str(text).map_err(|e| Error::format(&path, format!("header metadata `{STATE_KEY}`: {e}")));
    }
    let legacy = dir.join(LEGACY_STATE_META);
    if legacy.is_file() {
        return read_json(&legacy);
    }
    Err(Error::format(
        &path,
        format!("an SAE checkpoint without its step counters (no `{STATE_KEY}` in the header, no {LEGACY_STATE_META} beside it); pass --restart to start over"),
    ))
}

/// Loads the tensors of the checkpoint in `dir` (d inputs, n latents) with its metadata `meta`.
pub fn load_state(dir: &Path, meta: StateMeta, d: usize, n: usize, moments: DType, device: &Device) -> Result<LoadedState> {
    let f = SafeTensorsFile::open(dir.join(STATE))?;
    let group = |prefix: &str, dtype: DType| -> Result<SaeParams> {
        let load = |key: &str, shape: &[usize]| f.load_shaped(&format!("{prefix}{key}"), shape, dtype, device);
        Ok(SaeParams { w_enc: load("W_enc", &[d, n])?, b_enc: load("b_enc", &[n])?, w_dec: load("W_dec", &[n, d])?, b_dec: load("b_dec", &[d])? })
    };
    Ok(LoadedState {
        params: group("", DType::F32)?,
        m: group("adam_m.", moments)?,
        v: group("adam_v.", moments)?,
        since: f.load_shaped("since_fired", &[n], DType::I64, device)?,
        meta,
    })
}

/// Appends one JSON line to the training log.
pub fn append_log(dir: &Path, line: &Value) -> Result<()> {
    use std::io::Write;
    let path = dir.join(LOG);
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
    writeln!(f, "{line}").map_err(|e| Error::io(&path, e))
}

/// Keeps the log lines of steps up to `step` (a run resumed there logs what follows).
pub fn truncate_log(dir: &Path, step: usize) -> Result<()> {
    let path = dir.join(LOG);
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).ok().and_then(|v| v.get("step").and_then(Value::as_u64)).is_some_and(|s| (s as usize) <= step))
        .collect();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    write_atomic(&path, out.as_bytes())
}
