//! Where Diff-C's features come from. A `FeatureSource` gives the trainer the labels of each
//! split and the features of any of its images as seen in a given epoch; the trainer owns
//! batching and shuffling. Two cached sources are here: a feature store written by
//! `revelio extract` (`--pooling none` or `avg:HxW`) and a safetensors file of ready-made
//! features. They return the same features every epoch. The reference's online protocol (every
//! epoch: augmentation, VAE, fresh noise, the U-Net up to the layer) is another implementation
//! of the same trait, computing the features of (epoch, image) on the fly: `super::online`.

use crate::features::FeatureStore;
use crate::io::SafeTensorsFile;
use crate::ops::cat;
use crate::tensor::{DType, Device, Tensor};
use crate::{Error, Result};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The two splits the trainer uses: it learns on `Train` and reports top-1 on `Test` every
/// epoch (the reference has no validation split).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// A labelled set of feature maps, split in two. Item i of a split is the i-th entry of
/// `labels(split)`.
pub trait FeatureSource {
    /// What the features are (kind, path, layer, timestep...), for config.json and logs; two
    /// runs with the same description read the same features.
    fn describe(&self) -> serde_json::Value;
    /// [C, h, w]: one image's feature map.
    fn feature_shape(&self) -> [usize; 3];
    /// Class names by label (empty when the source has none).
    fn class_names(&self) -> &[String];
    /// Labels of the split's items, in item order.
    fn labels(&self, split: Split) -> &[i64];
    /// Features of items `items` of `split` as seen in `epoch` (cached sources ignore it):
    /// [items.len(), C, h, w] in `dtype` on `device`.
    fn features(&mut self, split: Split, epoch: usize, items: &[usize], dtype: DType, device: &Device) -> Result<Tensor>;
}

/// How a DiT block's tokens [T, D] become the classifier's input map [D, h, w] (T = h * w).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLayout {
    /// Channel c at (y, x) is channel c of the patch at row y, column x (ours, the default; the
    /// layout of every DiT tap and stored map, docs/dit.md).
    Map,
    /// The reference's `DiTClassifier_V4`: a raw `view` of the row-major [T, D] token buffer as
    /// [D, h, w], which scrambles channels and positions (spec section 3).
    View,
}

impl TokenLayout {
    pub fn parse(s: &str) -> Result<TokenLayout> {
        match s {
            "map" => Ok(TokenLayout::Map),
            "view" => Ok(TokenLayout::View),
            _ => Err(Error::BadOption(format!("--token-layout {s}: expected map or view"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TokenLayout::Map => "map",
            TokenLayout::View => "view",
        }
    }

    /// Adds `token_layout` to a source's description unless it is the default (so runs made
    /// before the option still resume).
    pub fn describe_in(self, d: &mut serde_json::Value) {
        if let (TokenLayout::View, Some(o)) = (self, d.as_object_mut()) {
            o.insert("token_layout".into(), json!(self.name()));
        }
    }

    /// f: DiT maps [B, D, h, w] (our layout) -> the classifier's input [B, D, h, w].
    pub fn apply(self, f: Tensor) -> Result<Tensor> {
        match self {
            TokenLayout::Map => Ok(f),
            TokenLayout::View => {
                let dims = f.dims().to_vec();
                // [B, D, h, w] -> tokens [B, h*w, D], the buffer the reference views as [B, D, h, w].
                crate::ops::nchw_to_tokens(&f)?.reshape(dims)
            }
        }
    }
}

/// Errors unless `layout` fits a model of kind `kind` ("dit", "sd", or "" when unknown):
/// `view` is DiT's only.
pub fn check_layout(layout: TokenLayout, kind: &str, what: &str) -> Result<()> {
    if layout == TokenLayout::View && kind != "dit" {
        return Err(Error::BadOption(format!("--token-layout view is for DiT features; {what} come from a model of kind `{kind}`")));
    }
    Ok(())
}

/// Reads the rows `rows` (any order) of a per-image tensor, one `read(start, count)` per run of
/// consecutive rows, and joins them: [rows.len(), ...].
fn gather(rows: &[usize], dims: &[usize], dtype: DType, mut read: impl FnMut(usize, usize) -> Result<Tensor>) -> Result<Tensor> {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let mut run = 1;
        while i + run < rows.len() && rows[i + run] == rows[i] + run {
            run += 1;
        }
        parts.push(read(rows[i], run)?);
        i += run;
    }
    let mut out_dims = vec![rows.len()];
    out_dims.extend_from_slice(dims);
    match parts.len() {
        0 => Tensor::zeros(out_dims, dtype, &Device::Cpu),
        1 => parts.pop().expect("one part").reshape(out_dims),
        _ => cat(&parts.iter().collect::<Vec<_>>(), 0)?.reshape(out_dims),
    }
}

fn check_map_shape(shape: &[usize], what: &str) -> Result<[usize; 3]> {
    match *shape {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => Err(Error::BadInput(format!(
            "{what}: Diff-C needs feature maps [C, h, w] per image, got {shape:?}; extract with --pooling none or avg:HxW"
        ))),
    }
}

/// Features of one (layer, timestep) from a feature store.
pub struct StoreSource {
    store: FeatureStore,
    layer: String,
    timestep: usize,
    shape: [usize; 3],
    /// Store indices of each split's items.
    indices: [Vec<usize>; 2],
    labels: [Vec<i64>; 2],
    layout: TokenLayout,
}

impl StoreSource {
    /// Opens `dir` for (layer, timestep) with the store's splits named `train_split` and
    /// `test_split`, DiT maps read in `layout`. Errors name the store when the layer or
    /// timestep is missing, the features are not maps, a split has no images, or `view` is
    /// asked of a store not made by DiT.
    pub fn open(dir: &Path, layer: &str, timestep: usize, train_split: &str, test_split: &str, layout: TokenLayout) -> Result<StoreSource> {
        let store = FeatureStore::open(dir)?;
        let shape = store.feature_shape(layer, timestep)?;
        let what = format!("{}: features of `{layer}` at t = {timestep} (pooling {})", dir.display(), store.manifest().pooling);
        let shape = check_map_shape(&shape, &what)?;
        let kind = store.manifest().settings.get("model_kind").and_then(serde_json::Value::as_str).unwrap_or("");
        check_layout(layout, kind, &what)?;
        let mut indices: [Vec<usize>; 2] = Default::default();
        for (slot, name) in indices.iter_mut().zip([train_split, test_split]) {
            *slot = store.split_indices(name);
            if slot.is_empty() {
                let mut present: Vec<String> = store.manifest().images.iter().map(|i| i.split.clone()).collect();
                present.sort();
                present.dedup();
                return Err(Error::BadOption(format!(
                    "{}: split `{name}` has no stored images (the store's splits: [{}]; {} images stored)",
                    dir.display(),
                    present.join(", "),
                    store.len()
                )));
            }
        }
        let all = store.labels();
        let labels = [indices[0].iter().map(|&i| all[i]).collect(), indices[1].iter().map(|&i| all[i]).collect()];
        Ok(StoreSource { store, layer: layer.into(), timestep, shape, indices, labels, layout })
    }
}

fn slot(split: Split) -> usize {
    match split {
        Split::Train => 0,
        Split::Test => 1,
    }
}

fn check_items(split: Split, items: &[usize], n: usize) -> Result<()> {
    if let Some(&bad) = items.iter().find(|&&i| i >= n) {
        return Err(Error::Internal(format!("item {bad} is out of range for the {} split of {n} images", split.name())));
    }
    Ok(())
}

impl FeatureSource for StoreSource {
    fn describe(&self) -> serde_json::Value {
        let mut d = json!({
            "kind": "store",
            "path": self.store.dir().display().to_string(),
            "layer": self.layer,
            "timestep": self.timestep,
            "model": self.store.manifest().model,
            "pooling": self.store.manifest().pooling,
        });
        self.layout.describe_in(&mut d);
        d
    }

    fn feature_shape(&self) -> [usize; 3] {
        self.shape
    }

    fn class_names(&self) -> &[String] {
        &self.store.manifest().class_names
    }

    fn labels(&self, split: Split) -> &[i64] {
        &self.labels[slot(split)]
    }

    fn features(&mut self, split: Split, _epoch: usize, items: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let idx = &self.indices[slot(split)];
        check_items(split, items, idx.len())?;
        let rows: Vec<usize> = items.iter().map(|&i| idx[i]).collect();
        self.layout.apply(self.store.read(&self.layer, self.timestep, &rows, dtype, device)?)
    }
}

/// Features made by any tool: a safetensors file holding `train_features` [N, C, h, w],
/// `train_labels` [N] (integer), `test_features` [M, C, h, w], `test_labels` [M], and
/// optionally a `class_names` metadata entry (a JSON list of strings).
pub struct FileSource {
    file: SafeTensorsFile,
    path: PathBuf,
    shape: [usize; 3],
    labels: [Vec<i64>; 2],
    class_names: Vec<String>,
}

impl FileSource {
    pub fn open(path: &Path) -> Result<FileSource> {
        let file = SafeTensorsFile::open(path)?;
        let mut shape = None;
        let mut labels: [Vec<i64>; 2] = Default::default();
        for (i, split) in [Split::Train, Split::Test].into_iter().enumerate() {
            let fkey = format!("{}_features", split.name());
            let lkey = format!("{}_labels", split.name());
            let (fshape, _) = file.shape_of(&fkey)?;
            let dims = fshape.dims();
            let what = format!("{}: `{fkey}` {fshape}", path.display());
            let per_image = check_map_shape(dims.get(1..).unwrap_or(&[]), &what)?;
            if dims[0] == 0 {
                return Err(Error::format(path, format!("split `{}` is empty: `{fkey}` has shape {fshape}", split.name())));
            }
            match shape {
                None => shape = Some(per_image),
                Some(s) if s != per_image => {
                    return Err(Error::format(
                        path,
                        format!("`{fkey}` maps are {per_image:?}, the train maps {s:?}; both splits need one shape"),
                    ))
                }
                Some(_) => {}
            }
            let l = file.load(&lkey, DType::I64, &Device::Cpu)?;
            if l.dims() != [dims[0]] {
                return Err(Error::format(
                    path,
                    format!("`{lkey}` has shape {}, expected [{}] (one label per row of `{fkey}`)", l.shape(), dims[0]),
                ));
            }
            labels[i] = l.to_vec::<i64>()?;
        }
        let class_names = match file.metadata().get("class_names") {
            Some(s) => serde_json::from_str(s)
                .map_err(|e| Error::format(path, format!("metadata `class_names` is not a JSON list of strings: {e}")))?,
            None => Vec::new(),
        };
        Ok(FileSource { file, path: path.to_path_buf(), shape: shape.expect("two splits read"), labels, class_names })
    }
}

impl FeatureSource for FileSource {
    fn describe(&self) -> serde_json::Value {
        json!({ "kind": "file", "path": self.path.display().to_string() })
    }

    fn feature_shape(&self) -> [usize; 3] {
        self.shape
    }

    fn class_names(&self) -> &[String] {
        &self.class_names
    }

    fn labels(&self, split: Split) -> &[i64] {
        &self.labels[slot(split)]
    }

    fn features(&mut self, split: Split, _epoch: usize, items: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        check_items(split, items, self.labels[slot(split)].len())?;
        let key = format!("{}_features", split.name());
        let file = &self.file;
        gather(items, &self.shape, dtype, |start, count| file.load_rows(&key, start, count, dtype, &Device::Cpu))?.to_device(device)
    }
}

/// The number of classes K for `source`: `requested` when given, else the number of class names,
/// else the largest label + 1. A label outside 0..K, or a requested K that differs from the
/// source's class names, is an error that says which.
pub fn class_count(source: &dyn FeatureSource, requested: Option<usize>) -> Result<usize> {
    let names = source.class_names().len();
    let mut max_label = -1i64;
    for split in [Split::Train, Split::Test] {
        if let Some((i, &l)) = source.labels(split).iter().enumerate().find(|(_, &l)| l < 0) {
            return Err(Error::BadInput(format!("label {l} of {} item {i} is negative", split.name())));
        }
        max_label = max_label.max(source.labels(split).iter().copied().max().unwrap_or(-1));
    }
    let k = match requested {
        Some(k) if names > 0 && k != names => {
            return Err(Error::BadOption(format!("class count mismatch: --num-classes {k}, but the features name {names} classes")))
        }
        Some(k) => k,
        None if names > 0 => names,
        None => (max_label + 1) as usize,
    };
    if max_label >= k as i64 {
        return Err(Error::BadInput(format!(
            "class count mismatch: label {max_label} needs at least {} classes, the classifier has {k}",
            max_label + 1
        )));
    }
    Ok(k)
}
