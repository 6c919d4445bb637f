//! Training and evaluation rows: from a feature store (one mean-pooled vector per image, as
//! Revelio, or every spatial position as a row, as the bottleneck SAEs) or from a plain
//! safetensors tensor. Rows are checked for NaN/inf as they are read, kept in the store's dtype
//! on the device the SAE runs on, and gathered into f32 batches there.
//!
//! Legend: N = images, P = positions per image (h*w), R = rows (N or N*P), d = channels.

use crate::features::{FeatureStore, Pooling};
use crate::io::SafeTensorsFile;
use crate::tensor::{DType, Device, Tensor};
use crate::{ops, Error, Result};
use std::path::Path;

/// What one row of the SAE's input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RowKind {
    /// One vector per image: the store's mean-pooled features, or the spatial mean of a map
    /// (Revelio pools at load time).
    Image,
    /// Every spatial position of every image.
    Position,
}

impl RowKind {
    pub fn parse(s: &str) -> Result<RowKind> {
        match s {
            "image" => Ok(RowKind::Image),
            "position" => Ok(RowKind::Position),
            _ => Err(Error::BadOption(format!("--rows {s}: expected image or position"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RowKind::Image => "image",
            RowKind::Position => "position",
        }
    }
}

/// Rows of features on one device.
#[derive(Debug, Clone)]
pub struct Rows {
    /// [R, d] in the stored dtype.
    pub x: Tensor,
    /// The image (store index) of each row.
    pub image: Vec<usize>,
    /// Positions per image (1 for image rows) and the map's (h, w) when known.
    pub per_image: usize,
    pub map_hw: Option<(usize, usize)>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.image.len()
    }

    pub fn is_empty(&self) -> bool {
        self.image.is_empty()
    }

    pub fn d(&self) -> usize {
        self.x.dims()[1]
    }

    /// Rows `idx` as f32 [idx.len(), d] on the rows' device.
    pub fn batch(&self, idx: &[usize]) -> Result<Tensor> {
        let ids: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
        let ids = Tensor::from_vec(ids, [idx.len()], &self.x.device())?;
        ops::to_dtype(&crate::ops::gather_rows(&self.x, &ids)?, DType::F32)
    }

    /// Rows start..start+len as f32.
    pub fn slice(&self, start: usize, len: usize) -> Result<Tensor> {
        ops::to_dtype(&self.x.narrow0(start, len)?, DType::F32)
    }
}

/// Errors on the first NaN or infinity in chunk `x` [rows, ...] (f32 on the CPU), naming the
/// image it came from.
fn check_finite(x: &[f32], per_row: usize, what: &dyn Fn(usize) -> String) -> Result<()> {
    if let Some(pos) = x.iter().position(|v| !v.is_finite()) {
        let row = pos / per_row.max(1);
        return Err(Error::BadInput(format!("{} holds a non-finite value ({}) at element {}", what(row), x[pos], pos % per_row.max(1))));
    }
    Ok(())
}

/// Images per read from a store (bounds host memory while loading).
const CHUNK: usize = 256;

/// Reads `images` of (layer, timestep) from `store` as rows of `kind`, stored in the store's
/// dtype on `device`.
pub fn from_store(store: &FeatureStore, layer: &str, timestep: usize, images: &[usize], kind: RowKind, device: &Device) -> Result<Rows> {
    let shape = store.feature_shape(layer, timestep)?;
    let pooling = store.manifest().pooling()?;
    let dtype = store.manifest().dtype()?;
    // (d, positions, map hw, whether channels come first)
    let (d, p, hw, channels_first) = match (pooling, shape.as_slice()) {
        (Pooling::Mean, [c]) => (*c, 1, None, false),
        (Pooling::Tokens, [p, c]) => {
            let s = (*p as f64).sqrt() as usize;
            (*c, *p, (s * s == *p).then_some((s, s)), false)
        }
        (Pooling::None | Pooling::Avg(..), [c, h, w]) => (*c, h * w, Some((*h, *w)), true),
        _ => {
            return Err(Error::BadInput(format!(
                "{}: features of `{layer}` at t{timestep} have per-image shape {shape:?} under pooling `{}`; expected [C] (mean), [P, C] (tokens) or [C, h, w]",
                store.dir().display(),
                pooling.name()
            )))
        }
    };
    if kind == RowKind::Position && pooling == Pooling::Mean {
        return Err(Error::BadOption(format!(
            "{}: the store holds mean-pooled vectors; --rows position needs features extracted with --pooling tokens or none",
            store.dir().display()
        )));
    }
    let per_image = if kind == RowKind::Position { p } else { 1 };
    let mut parts = Vec::new();
    for chunk in images.chunks(CHUNK) {
        let x = store.read(layer, timestep, chunk, DType::F32, &Device::Cpu)?;
        let v = x.cpu_f32("sae data")?;
        let per = x.numel() / chunk.len().max(1);
        check_finite(v, per, &|r| {
            let i = chunk[r];
            format!("{}: features of image {i} ({})", store.dir().display(), store.manifest().images[i].path)
        })?;
        // To [images, P, d] (positions major within an image), then rows.
        let x = if channels_first { crate::ops::permute(&x.reshape([chunk.len(), d, p])?, &[0, 2, 1])? } else { x.reshape([chunk.len(), p, d])? };
        let x = match kind {
            RowKind::Image if p > 1 => crate::ops::mean(&x, 1, false)?,
            _ => x.reshape([chunk.len() * per_image, d])?,
        };
        parts.push(ops::to_dtype(&x, dtype)?.to_device(device)?);
    }
    let x = match parts.len() {
        0 => Tensor::zeros([0, d], dtype, device)?,
        1 => parts.pop().expect("one part"),
        _ => crate::ops::cat(&parts.iter().collect::<Vec<_>>(), 0)?,
    };
    let image = images.iter().flat_map(|&i| std::iter::repeat_n(i, per_image)).collect();
    Ok(Rows { x, image, per_image, map_hw: if kind == RowKind::Position { hw } else { None } })
}

/// Rows from a safetensors file: tensor `name` (or the only tensor) of shape [R, d] (a higher
/// rank is flattened to rows of its last dim). Each row is its own "image".
pub fn from_file(path: &Path, name: Option<&str>, device: &Device) -> Result<Rows> {
    let f = SafeTensorsFile::open(path)?;
    let key = match name {
        Some(n) => n.to_string(),
        None => {
            let keys = f.keys();
            if keys.len() != 1 {
                return Err(Error::format(path, format!("holds {} tensors ({}); say which with --tensor", keys.len(), keys.join(", "))));
            }
            keys[0].clone()
        }
    };
    let x = f.load(&key, DType::F32, &Device::Cpu)?;
    let d = *x.dims().last().ok_or_else(|| Error::format(path, format!("tensor `{key}` is a scalar")))?;
    if x.rank() < 2 || d == 0 {
        return Err(Error::format(path, format!("tensor `{key}` has shape {}; expected [rows, d]", x.shape())));
    }
    let rows = x.numel() / d;
    let x = x.reshape([rows, d])?;
    check_finite(x.cpu_f32("sae data")?, d, &|r| format!("{}: row {r} of `{key}`", path.display()))?;
    Ok(Rows { x: x.to_device(device)?, image: (0..rows).collect(), per_image: 1, map_hw: None })
}

/// Splits `images` into (train, held out): a seeded random `frac` of them held out (at least
/// one when frac > 0 and there are two or more), both lists in ascending order.
pub fn holdout_split(images: &[usize], frac: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    if frac <= 0.0 || images.len() < 2 {
        return (images.to_vec(), Vec::new());
    }
    let n_out = ((images.len() as f64 * frac).round() as usize).clamp(1, images.len() - 1);
    let perm = permutation(images.len(), crate::rng::derive(seed, &[7]));
    let mut out: Vec<usize> = perm[..n_out].iter().map(|&i| images[i]).collect();
    let mut keep: Vec<usize> = perm[n_out..].iter().map(|&i| images[i]).collect();
    out.sort_unstable();
    keep.sort_unstable();
    (keep, out)
}

/// A permutation of 0..n (Fisher-Yates on the counter-based generator): a pure function of
/// (n, seed).
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (crate::rng::bits(seed, i as u64) % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_permutations_and_repeat() {
        let p = permutation(1000, 5);
        let mut s = p.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        assert_eq!(p, permutation(1000, 5));
        assert_ne!(p, permutation(1000, 6));
    }

    #[test]
    fn holdout_is_disjoint_and_covers() {
        let imgs: Vec<usize> = (10..60).collect();
        let (a, b) = holdout_split(&imgs, 0.2, 3);
        assert_eq!(b.len(), 10);
        let mut all = [a.clone(), b.clone()].concat();
        all.sort_unstable();
        assert_eq!(all, imgs);
        assert_eq!(holdout_split(&imgs, 0.0, 3).1, Vec::<usize>::new());
    }
}
