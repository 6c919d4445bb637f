//! Weights: the tensors of one model component, looked up by their diffusers/transformers key,
//! from a component folder (`diffusion_pytorch_model.safetensors`, `model.safetensors`, the
//! `*.fp16.safetensors` variants, or a sharded `*.safetensors.index.json`) or from a single-file
//! checkpoint through a key map. Loading is strict: a missing key names the file and the
//! nearest keys, a wrong shape gives both shapes, and `finish` lists every tensor no module
//! asked for. Model constructors descend with `scope.pp("down_blocks").pp(0)`, so struct field
//! names are the key segments.

use crate::io::safetensors::nearest_keys;
use crate::io::SafeTensorsFile;
use crate::tensor::{DType, Device, Shape, Tensor};
use crate::{Error, Result};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct Weights {
    /// Where the tensors came from, for messages (a folder or a file).
    source: PathBuf,
    files: Vec<SafeTensorsFile>,
    /// Model key -> (file index, key in that file).
    index: HashMap<String, (usize, String)>,
    dtype: DType,
    device: Device,
    used: Mutex<BTreeSet<String>>,
}

/// The weight file names tried in a component folder, in order; `variant` (e.g. "fp16") is tried
/// first when given.
fn candidate_files(dir: &Path, variant: Option<&str>) -> Vec<PathBuf> {
    let stems = ["diffusion_pytorch_model", "model"];
    let mut out = Vec::new();
    for stem in stems {
        if let Some(v) = variant {
            out.push(dir.join(format!("{stem}.{v}.safetensors.index.json")));
            out.push(dir.join(format!("{stem}.{v}.safetensors")));
        }
        out.push(dir.join(format!("{stem}.safetensors.index.json")));
        out.push(dir.join(format!("{stem}.safetensors")));
        if variant.is_none() {
            out.push(dir.join(format!("{stem}.fp16.safetensors.index.json")));
            out.push(dir.join(format!("{stem}.fp16.safetensors")));
        }
    }
    out
}

fn shard_files(index_path: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index_path).map_err(|e| Error::io(index_path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::format(index_path, format!("not valid JSON: {e}")))?;
    let map = v["weight_map"]
        .as_object()
        .ok_or_else(|| Error::format(index_path, "no `weight_map` object"))?;
    let dir = index_path.parent().unwrap_or(Path::new("."));
    let files: BTreeSet<&str> = map.values().filter_map(|f| f.as_str()).collect();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

impl Weights {
    /// The weights of the component folder `dir`, converted to `dtype` on `device`.
    pub fn from_dir(dir: &Path, variant: Option<&str>, dtype: DType, device: &Device) -> Result<Weights> {
        let found = candidate_files(dir, variant).into_iter().find(|p| p.is_file()).ok_or_else(|| {
            Error::format(
                dir,
                "no weights found: expected diffusion_pytorch_model.safetensors or model.safetensors \
                 (or an .fp16 variant, or a sharded .safetensors.index.json); .bin/.ckpt files are \
                 not read: convert them to safetensors first",
            )
        })?;
        let files = if found.to_string_lossy().ends_with(".index.json") {
            shard_files(&found)?
        } else {
            vec![found]
        };
        Weights::from_files(dir, &files, |k| Some(k.to_string()), dtype, device)
    }

    /// The tensors of `files`, keyed by `map(stored key)` (None drops a key, e.g. another
    /// component's tensors in a single-file checkpoint).
    pub fn from_files(
        source: &Path,
        files: &[PathBuf],
        map: impl Fn(&str) -> Option<String>,
        dtype: DType,
        device: &Device,
    ) -> Result<Weights> {
        let mut opened = Vec::new();
        let mut index = HashMap::new();
        for (i, path) in files.iter().enumerate() {
            let f = SafeTensorsFile::open(path)?;
            for stored in f.keys() {
                if let Some(key) = map(&stored) {
                    if let Some((j, prev)) = index.insert(key.clone(), (i, stored.clone())) {
                        return Err(Error::format(
                            path,
                            format!("tensor `{key}` appears twice (as `{prev}` in {} and `{stored}`)", files[j].display()),
                        ));
                    }
                }
            }
            opened.push(f);
        }
        Ok(Weights {
            source: source.to_path_buf(),
            files: opened,
            index,
            dtype,
            device: device.clone(),
            used: Mutex::new(BTreeSet::new()),
        })
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The root scope (no prefix).
    pub fn root(&self) -> Scope<'_> {
        Scope { weights: self, prefix: String::new() }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The stored shape of `key`, if present.
    pub fn shape_of(&self, key: &str) -> Option<Shape> {
        let (i, stored) = self.index.get(key)?;
        self.files[*i].shape_of(stored).ok().map(|(s, _)| s)
    }

    fn missing(&self, key: &str) -> Error {
        let near = nearest_keys(key, self.index.keys().map(|s| s.as_str()), 3);
        Error::format(
            &self.source,
            format!("missing tensor `{key}` ({} tensors; nearest: {})", self.index.len(), near.join(", ")),
        )
    }

    /// Loads `key` with shape `expected`, in the model dtype, on the model device.
    pub fn get(&self, key: &str, expected: &[usize]) -> Result<Tensor> {
        self.get_as(key, expected, self.dtype)
    }

    /// Loads `key` with shape `expected` in `dtype` (some tensors stay f32 whatever the model
    /// dtype, e.g. norm statistics).
    pub fn get_as(&self, key: &str, expected: &[usize], dtype: DType) -> Result<Tensor> {
        let (i, stored) = self.index.get(key).ok_or_else(|| self.missing(key))?;
        let f = &self.files[*i];
        let (shape, _) = f.shape_of(stored)?;
        if shape.dims() != expected {
            return Err(Error::format(
                f.path(),
                format!("tensor `{key}` has shape {shape}, the model config needs {}", Shape::from(expected)),
            ));
        }
        let t = f.load(stored, dtype, &self.device)?;
        self.used.lock().expect("weights lock").insert(key.to_string());
        Ok(t)
    }

    /// Keys no module loaded, sorted.
    pub fn unused_keys(&self) -> Vec<String> {
        let used = self.used.lock().expect("weights lock");
        let mut k: Vec<String> = self.index.keys().filter(|k| !used.contains(*k)).cloned().collect();
        k.sort();
        k
    }

    /// Errors if any tensor was not used, except keys for which `ignorable` is true (buffers a
    /// checkpoint may carry that the computation does not need, e.g. CLIP's `position_ids`).
    pub fn finish(&self, ignorable: impl Fn(&str) -> bool) -> Result<()> {
        let extra: Vec<String> = self.unused_keys().into_iter().filter(|k| !ignorable(k)).collect();
        if extra.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = extra
            .iter()
            .take(10)
            .map(|k| format!("`{k}` {}", self.shape_of(k).map(|s| s.to_string()).unwrap_or_default()))
            .collect();
        Err(Error::format(
            &self.source,
            format!(
                "{} tensor(s) the model config has no place for (wrong config for these weights?): {}{}",
                extra.len(),
                shown.join(", "),
                if extra.len() > 10 { ", ..." } else { "" }
            ),
        ))
    }
}

/// A prefix into `Weights`: `scope.pp("to_q").get("weight", &[c, c])` loads `<prefix>.to_q.weight`.
#[derive(Clone)]
pub struct Scope<'a> {
    weights: &'a Weights,
    prefix: String,
}

impl<'a> Scope<'a> {
    /// The scope one segment deeper.
    pub fn pp(&self, segment: impl Display) -> Scope<'a> {
        Scope { weights: self.weights, prefix: self.key(&segment.to_string()) }
    }

    /// The full key of `name` under this prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// This scope's prefix (the module path).
    pub fn path(&self) -> &str {
        &self.prefix
    }

    pub fn get(&self, name: &str, expected: &[usize]) -> Result<Tensor> {
        self.weights.get(&self.key(name), expected)
    }

    pub fn get_as(&self, name: &str, expected: &[usize], dtype: DType) -> Result<Tensor> {
        self.weights.get_as(&self.key(name), expected, dtype)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.weights.contains(&self.key(name))
    }

    pub fn shape_of(&self, name: &str) -> Option<Shape> {
        self.weights.shape_of(&self.key(name))
    }

    pub fn weights(&self) -> &'a Weights {
        self.weights
    }
}
