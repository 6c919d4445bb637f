//! Weights: the tensors of one model component, looked up by their diffusers/transformers key,
//! from a component folder (`diffusion_pytorch_model.safetensors`, `model.safetensors`, the
//! `*.fp16.safetensors` variants, or a sharded `*.safetensors.index.json`) or from a single-file
//! checkpoint through a key map, which may also transform a tensor (`Transform`: a reshape, or
//! one part of a stacked tensor). Loading is strict: a missing key names the file and the
//! nearest keys, a wrong shape gives both shapes, and `finish` lists every tensor no module
//! asked for (by model key). Model constructors descend with `scope.pp("down_blocks").pp(0)`,
//! so struct field names are the key segments.

use crate::io::safetensors::nearest_keys;
use crate::io::SafeTensorsFile;
use crate::tensor::{DType, Device, Shape, Tensor};
use crate::{Error, Result};
use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How a stored tensor becomes the model's tensor (single-file checkpoints store some tensors in
/// another form than diffusers/transformers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transform {
    /// As stored.
    Identity,
    /// The same elements under another shape: a 1x1 conv weight [C, C, 1, 1] as a linear [C, C].
    Reshape(Vec<usize>),
    /// Part `index` of `parts` equal parts along dim 0: q, k or v of a stacked in_proj [3C, ..].
    Slice { index: usize, parts: usize },
}

impl Transform {
    /// The shape the model sees for a stored tensor of shape `stored`, or why it cannot be.
    pub fn apply_to_shape(&self, stored: &Shape) -> std::result::Result<Shape, String> {
        match self {
            Transform::Identity => Ok(stored.clone()),
            Transform::Reshape(dims) => {
                let to = Shape::from(dims.as_slice());
                if to.numel() == stored.numel() {
                    Ok(to)
                } else {
                    Err(format!("cannot view shape {stored} as {to}"))
                }
            }
            Transform::Slice { index, parts } => {
                let rows = stored.dims().first().copied().unwrap_or(0);
                if *parts == 0 || index >= parts || rows % parts != 0 {
                    return Err(format!("cannot take part {index} of {parts} along dim 0 of shape {stored}"));
                }
                let mut dims = stored.dims().to_vec();
                dims[0] = rows / parts;
                Ok(Shape::new(dims))
            }
        }
    }
}

/// Where a model key's tensor lives.
#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    /// The key in that file.
    stored: String,
    transform: Transform,
    /// The shape the model sees (after the transform).
    shape: Shape,
}

pub struct Weights {
    /// Where the tensors came from, for messages (a folder or a file).
    source: PathBuf,
    files: Vec<SafeTensorsFile>,
    /// Model key -> where and how to read it.
    index: HashMap<String, Entry>,
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
        Weights::from_files_mapped(
            source,
            files,
            |k, _| Ok(map(k).map(|m| (m, Transform::Identity)).into_iter().collect()),
            dtype,
            device,
        )
    }

    /// The tensors of `files` through a key map that may transform them: `map(stored key, stored
    /// shape)` gives the model keys the stored tensor provides (none for another component's
    /// tensors, several for a stacked q/k/v), each with its transform. A model key given twice,
    /// or a transform that does not fit the stored shape, is an error naming both.
    pub fn from_files_mapped(
        source: &Path,
        files: &[PathBuf],
        map: impl Fn(&str, &Shape) -> Result<Vec<(String, Transform)>>,
        dtype: DType,
        device: &Device,
    ) -> Result<Weights> {
        let mut opened = Vec::new();
        let mut index: HashMap<String, Entry> = HashMap::new();
        for (i, path) in files.iter().enumerate() {
            let f = SafeTensorsFile::open(path)?;
            for stored in f.keys() {
                let (stored_shape, _) = f.shape_of(&stored)?;
                for (key, transform) in map(&stored, &stored_shape)? {
                    let shape = transform.apply_to_shape(&stored_shape).map_err(|e| {
                        Error::format(path, format!("tensor `{stored}` as `{key}`: {e}"))
                    })?;
                    let entry = Entry { file: i, stored: stored.clone(), transform, shape };
                    if let Some(prev) = index.insert(key.clone(), entry) {
                        return Err(Error::format(
                            path,
                            format!(
                                "tensor `{key}` appears twice (as `{}` in {} and `{stored}`)",
                                prev.stored,
                                files[prev.file].display()
                            ),
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

    /// The shape of `key` as the model sees it (after any transform), if present.
    pub fn shape_of(&self, key: &str) -> Option<Shape> {
        self.index.get(key).map(|e| e.shape.clone())
    }

    /// Every model key, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.index.keys().cloned().collect();
        k.sort();
        k
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
        let e = self.index.get(key).ok_or_else(|| self.missing(key))?;
        let f = &self.files[e.file];
        if e.shape.dims() != expected {
            let stored = if e.stored == key { String::new() } else { format!(" (stored as `{}`)", e.stored) };
            return Err(Error::format(
                f.path(),
                format!("tensor `{key}`{stored} has shape {}, the model config needs {}", e.shape, Shape::from(expected)),
            ));
        }
        let t = match &e.transform {
            Transform::Identity => f.load(&e.stored, dtype, &self.device)?,
            Transform::Reshape(dims) => f.load(&e.stored, dtype, &self.device)?.reshape(dims.as_slice())?,
            // Cut on the host and copy the part, so the model does not keep the whole stack alive.
            Transform::Slice { index, .. } => {
                let rows = e.shape.dims()[0];
                f.load(&e.stored, dtype, &Device::Cpu)?
                    .narrow0(index * rows, rows)?
                    .deep_clone()?
                    .to_device(&self.device)?
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_give_the_model_shape_or_say_why_not() {
        let s = Shape::from([768, 768, 1, 1]);
        assert_eq!(Transform::Identity.apply_to_shape(&s), Ok(s.clone()));
        assert_eq!(Transform::Reshape(vec![768, 768]).apply_to_shape(&s), Ok(Shape::from([768, 768])));
        assert!(Transform::Reshape(vec![768, 767]).apply_to_shape(&s).unwrap_err().contains("[768, 767]"));
        let qkv = Shape::from([3072, 1024]);
        assert_eq!(Transform::Slice { index: 2, parts: 3 }.apply_to_shape(&qkv), Ok(Shape::from([1024, 1024])));
        assert!(Transform::Slice { index: 3, parts: 3 }.apply_to_shape(&qkv).is_err());
        assert!(Transform::Slice { index: 0, parts: 5 }.apply_to_shape(&qkv).unwrap_err().contains("[3072, 1024]"));
    }
}
