//! The feature store: what `revelio extract` writes and the k-SAE and Diff-C trainers read.
//!
//! A folder holding `manifest.json` and safetensors shards. Shard `shard-NNNNN.safetensors`
//! covers images `start..start + count` (dataset order) and holds one tensor per (layer,
//! timestep) named `<layer>/t<timestep>` with shape [count, ...per-image shape], plus `index`
//! (i64 [count], the image index) and `label` (i64 [count]). Per-image shapes by pooling:
//! `mean` [C], `none` [C, h, w], `avg:HxW` [C, H, W], `tokens` [h*w, C]. Shards are written
//! atomically and recorded in the manifest only once complete, so an interrupted run loses
//! nothing finished and a rerun skips what is done.

use crate::io::{save_safetensors, write_atomic, SafeTensorsFile};
use crate::ops;
use crate::tensor::{DType, Device, Tensor};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

pub const STORE_FORMAT: &str = "revelio-features-1";
pub const MANIFEST: &str = "manifest.json";

/// One image of the dataset, in dataset order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageEntry {
    pub path: String,
    pub label: i64,
    /// `train`, `test`, ... (empty when the dataset has no splits).
    #[serde(default)]
    pub split: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    /// The prompt CLIP chose for the image (`extract --prompt-from-clip`); none for failed
    /// images and other conditionings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

/// An image that could not be read, and why. Its rows in the shards are zeros; readers skip
/// it (`split_indices`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The image's index in dataset order.
    pub index: usize,
    pub path: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub file: String,
    pub start: usize,
    pub count: usize,
}

/// How feature maps were reduced per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Global average over positions: [C] (the k-SAE input in Revelio).
    Mean,
    /// The full map [C, h, w] (the Diff-C input).
    None,
    /// Every position as a row: [h*w, C] (SAEs on bottleneck activations).
    Tokens,
    /// Adaptive average pool to [C, H, W].
    Avg(usize, usize),
}

impl Pooling {
    pub fn parse(s: &str) -> Result<Pooling> {
        match s {
            "mean" => Ok(Pooling::Mean),
            "none" => Ok(Pooling::None),
            "tokens" => Ok(Pooling::Tokens),
            _ => {
                let bad = || Error::BadOption(format!("--pooling {s}: expected mean, none, tokens or avg:HxW"));
                let hw = s.strip_prefix("avg:").ok_or_else(bad)?;
                let (h, w) = hw.split_once('x').ok_or_else(bad)?;
                let (h, w) = (h.parse().map_err(|_| bad())?, w.parse().map_err(|_| bad())?);
                if h == 0 || w == 0 {
                    return Err(bad());
                }
                Ok(Pooling::Avg(h, w))
            }
        }
    }

    pub fn name(&self) -> String {
        match self {
            Pooling::Mean => "mean".into(),
            Pooling::None => "none".into(),
            Pooling::Tokens => "tokens".into(),
            Pooling::Avg(h, w) => format!("avg:{h}x{w}"),
        }
    }

    /// f: [B, C, h, w] (a map) or [B, N, C] (tokens, as transformer blocks give them) -> the
    /// pooled features on the host as f32, [B, per-image...], and the per-image shape.
    pub fn apply(&self, f: &Tensor) -> Result<(Vec<f32>, Vec<usize>)> {
        let (t, shape) = match (*self, f.dims()) {
            (Pooling::Mean, &[_, c, _, _]) => (ops::global_avg_pool(f)?, vec![c]),
            (Pooling::None, &[_, c, h, w]) => (f.clone(), vec![c, h, w]),
            (Pooling::Tokens, &[_, c, h, w]) => (ops::nchw_to_tokens(f)?, vec![h * w, c]),
            (Pooling::Avg(oh, ow), &[_, c, _, _]) => (ops::adaptive_avg_pool2d(f, (oh, ow))?, vec![c, oh, ow]),
            (Pooling::Tokens, &[_, n, c]) => (f.clone(), vec![n, c]),
            (Pooling::Mean, &[_, _, c]) => (ops::mean(f, 1, false)?, vec![c]),
            (p, d) => {
                return Err(Error::BadOption(format!(
                    "pooling {}: features of shape {d:?} are neither a map [B, C, h, w] nor tokens [B, N, C] (tokens take mean or tokens)",
                    p.name()
                )))
            }
        };
        Ok((ops::to_dtype(&t, DType::F32)?.to_f32_vec()?, shape))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// The model folder (or file) the features came from, and a hash of its config.
    pub model: String,
    pub model_config_hash: String,
    pub layers: Vec<String>,
    pub timesteps: Vec<usize>,
    pub pooling: String,
    /// Storage dtype of the feature tensors (`f32`, `f16`, `bf16`).
    pub dtype: String,
    pub seed: u64,
    /// Everything else that shaped the features (resolution, noise draws, conditioning, ...).
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    pub images: Vec<ImageEntry>,
    #[serde(default)]
    pub class_names: Vec<String>,
    /// Per-image shape of each `<layer>/t<timestep>` tensor.
    #[serde(default)]
    pub feature_shapes: HashMap<String, Vec<usize>>,
    #[serde(default)]
    pub shards: Vec<ShardEntry>,
    #[serde(default)]
    pub failures: Vec<Failure>,
}

/// The tensor name of a (layer, timestep) in a shard.
pub fn feature_key(layer: &str, timestep: usize) -> String {
    format!("{layer}/t{timestep}")
}

impl Manifest {
    pub fn pooling(&self) -> Result<Pooling> {
        Pooling::parse(&self.pooling)
    }

    pub fn dtype(&self) -> Result<DType> {
        DType::parse(&self.dtype).ok_or_else(|| Error::BadInput(format!("manifest dtype `{}` is not f32, f16 or bf16", self.dtype)))
    }

    /// Images covered by complete shards.
    pub fn num_complete(&self) -> usize {
        self.shards.iter().map(|s| s.count).sum()
    }

    /// The (layer, timestep) a reader asks for, with a store of `revelio generate` also by
    /// `branch` (its layers are `<tap>@<branch>`) and sampling `step` (its features sit at each
    /// collected step's timestep, listed in `settings.collect`). Without step and branch, the
    /// layer and timestep as given.
    pub fn select(&self, layer: Option<&str>, timestep: Option<usize>, step: Option<usize>, branch: Option<&str>) -> Result<(Option<String>, Option<usize>)> {
        if step.is_none() && branch.is_none() {
            return Ok((layer.map(String::from), timestep));
        }
        let collect = self.settings.get("collect").filter(|_| self.settings.get("kind").and_then(|k| k.as_str()) == Some("generation"));
        let Some(c) = collect else {
            return Err(Error::BadOption(format!("--step and --branch select in stores of `revelio generate`; {} is an extraction store (use --timestep)", self.model)));
        };
        let list = |k: &str| -> Vec<u64> { c[k].as_array().map(|a| a.iter().filter_map(|v| v.as_u64()).collect()).unwrap_or_default() };
        let timestep = match step {
            None => timestep,
            Some(s) => {
                let (steps, ts) = (list("steps"), list("timesteps"));
                let t = steps.iter().position(|&k| k == s as u64).and_then(|i| ts.get(i)).ok_or_else(|| {
                    Error::BadOption(format!("--step {s}: the store collected steps {steps:?}"))
                })?;
                if timestep.is_some_and(|given| given as u64 != *t) {
                    return Err(Error::BadOption(format!("--step {s} is timestep {t}, not timestep {}", timestep.unwrap_or(0))));
                }
                Some(*t as usize)
            }
        };
        let layer = match (layer, branch) {
            (l, None) => l.map(String::from),
            (Some(l), Some(_)) if l.contains('@') => return Err(Error::BadOption(format!("--layer {l} already names a branch; drop --branch"))),
            (Some(l), Some(b)) => Some(format!("{l}@{b}")),
            (None, Some(b)) => {
                let taps: Vec<&str> = c["taps"].as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
                match taps[..] {
                    [t] => Some(format!("{t}@{b}")),
                    _ => return Err(Error::BadOption(format!("--branch {b}: pass --layer too (the store has taps [{}])", taps.join(", ")))),
                }
            }
        };
        Ok((layer, timestep))
    }
}

/// The manifest of the store in `dir`, checked to be one this revelio reads.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| Error::format(&path, format!("not a feature-store manifest: {e}")))?;
    if manifest.format != STORE_FORMAT {
        return Err(Error::format(&path, format!("format `{}`, this revelio reads `{STORE_FORMAT}`", manifest.format)));
    }
    Ok(manifest)
}

/// Writes `manifest` to `dir/manifest.json` atomically.
pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    let text = serde_json::to_string_pretty(manifest).map_err(|e| Error::Internal(format!("manifest: {e}")))?;
    write_atomic(&dir.join(MANIFEST), text.as_bytes())
}

/// A feature store opened for reading.
pub struct FeatureStore {
    dir: PathBuf,
    manifest: Manifest,
    files: Vec<OnceLock<SafeTensorsFile>>,
    open_lock: Mutex<()>,
}

impl FeatureStore {
    pub fn open(dir: impl AsRef<Path>) -> Result<FeatureStore> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = read_manifest(&dir)?;
        let path = dir.join(MANIFEST);
        let mut shards = manifest.shards.clone();
        shards.sort_by_key(|s| s.start);
        for w in shards.windows(2) {
            if w[0].start + w[0].count != w[1].start {
                return Err(Error::format(&path, format!("shards {} and {} leave a gap or overlap", w[0].file, w[1].file)));
            }
        }
        if let Some(part) = manifest.settings.get("part") {
            return Err(Error::BadInput(format!(
                "{}: part {part} of a sharded run; join the parts first with `revelio features merge {}`",
                dir.display(),
                dir.parent().unwrap_or(Path::new(".")).display()
            )));
        }
        let manifest = Manifest { shards, ..manifest };
        let files = manifest.shards.iter().map(|_| OnceLock::new()).collect();
        Ok(FeatureStore { dir, manifest, files, open_lock: Mutex::new(()) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Images with features (those of complete shards), in dataset order from 0.
    pub fn len(&self) -> usize {
        self.manifest.num_complete()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Labels of the stored images.
    pub fn labels(&self) -> Vec<i64> {
        self.manifest.images[..self.len()].iter().map(|i| i.label).collect()
    }

    /// Indices of the stored, readable images in `split` (all splits when `split` is empty);
    /// images listed as failures are left out.
    pub fn split_indices(&self, split: &str) -> Vec<usize> {
        let failed: std::collections::HashSet<usize> = self.manifest.failures.iter().map(|f| f.index).collect();
        (0..self.len())
            .filter(|i| !failed.contains(i) && (split.is_empty() || self.manifest.images[*i].split == split))
            .collect()
    }

    /// Checks the store has (layer, timestep) and returns its per-image shape.
    pub fn feature_shape(&self, layer: &str, timestep: usize) -> Result<Vec<usize>> {
        let key = feature_key(layer, timestep);
        self.manifest.feature_shapes.get(&key).cloned().ok_or_else(|| {
            Error::BadOption(format!(
                "{}: no features for layer `{layer}` at timestep {timestep}; the store has layers [{}] at timesteps {:?}",
                self.dir.display(),
                self.manifest.layers.join(", "),
                self.manifest.timesteps
            ))
        })
    }

    fn shard(&self, i: usize) -> Result<&SafeTensorsFile> {
        if let Some(f) = self.files[i].get() {
            return Ok(f);
        }
        let _g = self.open_lock.lock().expect("store lock");
        if self.files[i].get().is_none() {
            let f = SafeTensorsFile::open(self.dir.join(&self.manifest.shards[i].file))?;
            let _ = self.files[i].set(f);
        }
        Ok(self.files[i].get().expect("set above"))
    }

    /// Features of images `indices` (any order, repeats allowed) for (layer, timestep):
    /// [indices.len(), ...per-image shape], converted to `dtype` on `device`.
    pub fn read(&self, layer: &str, timestep: usize, indices: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let shape = self.feature_shape(layer, timestep)?;
        let key = feature_key(layer, timestep);
        let mut parts = Vec::new();
        let mut i = 0;
        while i < indices.len() {
            let idx = indices[i];
            let s = self
                .manifest
                .shards
                .partition_point(|sh| sh.start + sh.count <= idx);
            let sh = self.manifest.shards.get(s).filter(|sh| sh.start <= idx).ok_or_else(|| {
                Error::BadInput(format!("{}: image {idx} has no features (the store holds {})", self.dir.display(), self.len()))
            })?;
            // A run of consecutive indices inside one shard is read as one slice.
            let mut run = 1;
            while i + run < indices.len() && indices[i + run] == idx + run && idx + run < sh.start + sh.count {
                run += 1;
            }
            parts.push(self.shard(s)?.load_rows(&key, idx - sh.start, run, dtype, &Device::Cpu)?);
            i += run;
        }
        let mut dims = vec![indices.len()];
        dims.extend(&shape);
        let joined = match parts.len() {
            0 => Tensor::zeros(dims.clone(), dtype, &Device::Cpu)?,
            1 => parts.pop().expect("one part"),
            _ => crate::ops::cat(&parts.iter().collect::<Vec<_>>(), 0)?,
        };
        joined.reshape(dims)?.to_device(device)
    }

    /// All stored images' features for (layer, timestep).
    pub fn read_all(&self, layer: &str, timestep: usize, dtype: DType, device: &Device) -> Result<Tensor> {
        let all: Vec<usize> = (0..self.len()).collect();
        self.read(layer, timestep, &all, dtype, device)
    }
}

/// Writes a feature store: the manifest first (with no shards), then shards as they complete.
pub struct FeatureStoreWriter {
    dir: PathBuf,
    manifest: Manifest,
}

impl FeatureStoreWriter {
    /// Starts a store in `dir`, or resumes one there whose manifest matches `manifest` in
    /// everything but its shards and failures (a different run's store is an error).
    pub fn create_or_resume(dir: impl AsRef<Path>, manifest: Manifest) -> Result<FeatureStoreWriter> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join(MANIFEST);
        if path.exists() {
            let existing = read_manifest(&dir)?;
            let same = Manifest { shards: vec![], failures: vec![], feature_shapes: HashMap::new(), ..existing.clone() };
            let asked = Manifest { shards: vec![], failures: vec![], feature_shapes: HashMap::new(), ..manifest.clone() };
            if same != asked {
                return Err(Error::BadOption(format!(
                    "{} holds a feature store made with other settings (model, layers, timesteps, pooling, dtype, seed, \
                     images or settings differ); use another --out folder or delete it",
                    dir.display()
                )));
            }
            return Ok(FeatureStoreWriter { dir, manifest: existing });
        }
        let w = FeatureStoreWriter { dir, manifest: Manifest { shards: vec![], ..manifest } };
        w.save_manifest()?;
        Ok(w)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Tensor (layer, timestep) of the stored shard of images `start..start + count`, as f32
    /// on the CPU.
    pub fn read_shard(&self, start: usize, count: usize, layer: &str, timestep: usize) -> Result<Tensor> {
        let sh = self.manifest.shards.iter().find(|s| s.start == start && s.count == count).ok_or_else(|| {
            Error::BadInput(format!("{}: no shard of images {start}..{}", self.dir.display(), start + count))
        })?;
        SafeTensorsFile::open(self.dir.join(&sh.file))?.load(&feature_key(layer, timestep), DType::F32, &Device::Cpu)
    }

    /// Whether images `start..start + count` are already stored.
    pub fn has_shard(&self, start: usize, count: usize) -> bool {
        self.manifest.shards.iter().any(|s| s.start == start && s.count == count)
    }

    fn save_manifest(&self) -> Result<()> {
        write_manifest(&self.dir, &self.manifest)
    }

    /// Writes the shard of images `start..start + count`: `features` maps (layer, timestep) to
    /// [count, ...]; then records it (and any new failures) in the manifest.
    pub fn write_shard(
        &mut self,
        start: usize,
        count: usize,
        features: &[((String, usize), Tensor)],
        failures: &[Failure],
    ) -> Result<()> {
        let file = format!("shard-{start:08}.safetensors");
        let index: Vec<i64> = (start..start + count).map(|i| i as i64).collect();
        let labels: Vec<i64> = self.manifest.images[start..start + count].iter().map(|i| i.label).collect();
        let index = Tensor::from_vec(index, [count], &Device::Cpu)?;
        let labels = Tensor::from_vec(labels, [count], &Device::Cpu)?;
        let mut named: Vec<(String, &Tensor)> = vec![("index".into(), &index), ("label".into(), &labels)];
        for ((layer, t), x) in features {
            if x.dims().first() != Some(&count) {
                return Err(Error::Internal(format!("shard at {start}: features {layer}@{t} have shape {}, expected {count} rows", x.shape())));
            }
            let key = feature_key(layer, *t);
            self.manifest.feature_shapes.insert(key.clone(), x.dims()[1..].to_vec());
            named.push((key, x));
        }
        let refs: Vec<(&str, &Tensor)> = named.iter().map(|(k, t)| (k.as_str(), *t)).collect();
        save_safetensors(self.dir.join(&file), &refs, None)?;
        self.manifest.shards.retain(|s| s.start != start);
        self.manifest.shards.push(ShardEntry { file, start, count });
        self.manifest.shards.sort_by_key(|s| s.start);
        self.manifest.failures.extend_from_slice(failures);
        self.save_manifest()
    }
}
