//! safetensors files: opened with memmap2 (nothing is read until a tensor is asked for), tensors
//! converted on load to the dtype asked for (f16/bf16/f32/f64 among floats, i64/i32 among ints),
//! and strict errors: a missing key names the file and the nearest keys, a wrong shape gives
//! both shapes. Saving converts to the stored dtype on the host and writes atomically.

use crate::tensor::{CpuStorage, DType, Device, Shape, Storage, Tensor};
use crate::{Error, Result};
use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::tensor::{Dtype as StDtype, Metadata, TensorInfo};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct SafeTensorsFile {
    path: PathBuf,
    mmap: Mmap,
    /// Byte offset of the data section.
    data_start: usize,
    metadata: Metadata,
}

impl std::fmt::Debug for SafeTensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SafeTensorsFile({})", self.path.display())
    }
}

fn to_dtype(d: StDtype) -> Option<DType> {
    match d {
        StDtype::F32 => Some(DType::F32),
        StDtype::F16 => Some(DType::F16),
        StDtype::BF16 => Some(DType::BF16),
        StDtype::I64 => Some(DType::I64),
        StDtype::I32 => Some(DType::I32),
        _ => None,
    }
}

fn from_dtype(d: DType) -> StDtype {
    match d {
        DType::F32 => StDtype::F32,
        DType::F16 => StDtype::F16,
        DType::BF16 => StDtype::BF16,
        DType::I64 => StDtype::I64,
        DType::I32 => StDtype::I32,
    }
}

/// Edit distance, for suggesting the key a user meant.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for j in 0..b.len() {
            let cost = usize::from(ca != b[j]);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Up to `n` of `keys` closest to `key`.
pub fn nearest_keys<'a>(key: &str, keys: impl Iterator<Item = &'a str>, n: usize) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = keys.map(|k| (edit_distance(key, k), k)).collect();
    scored.sort();
    scored.into_iter().take(n).map(|(_, k)| k.to_string()).collect()
}

impl SafeTensorsFile {
    pub fn open(path: impl AsRef<Path>) -> Result<SafeTensorsFile> {
        let path = path.as_ref().to_path_buf();
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: the map is read-only; a file changed under us by another process could give
        // wrong values but not unsoundness beyond what reading a changing file gives.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(&path, e))?;
        let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&mmap)
            .map_err(|e| Error::format(&path, format!("not a valid safetensors file: {e}")))?;
        Ok(SafeTensorsFile { path, mmap, data_start: 8 + header_len, metadata })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All tensor names, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.metadata.tensors().into_keys().collect();
        k.sort();
        k
    }

    pub fn contains(&self, key: &str) -> bool {
        self.metadata.info(key).is_some()
    }

    /// The file's `__metadata__` strings.
    pub fn metadata(&self) -> HashMap<String, String> {
        self.metadata.metadata().clone().unwrap_or_default()
    }

    fn info(&self, key: &str) -> Result<&TensorInfo> {
        self.metadata.info(key).ok_or_else(|| {
            let names = self.metadata.tensors();
            let near = nearest_keys(key, names.keys().map(|s| s.as_str()), 3);
            Error::format(
                &self.path,
                format!("no tensor named `{key}` ({} tensors; nearest: {})", names.len(), near.join(", ")),
            )
        })
    }

    /// The stored shape and dtype of `key`. Stored dtypes revelio cannot hold are mapped to
    /// the nearest it can (f64 to f32), or named in an error.
    pub fn shape_of(&self, key: &str) -> Result<(Shape, StDtype)> {
        let info = self.info(key)?;
        Ok((Shape::new(info.shape.clone()), info.dtype))
    }

    /// Loads `key` converted to `dtype`, on `device`.
    pub fn load(&self, key: &str, dtype: DType, device: &Device) -> Result<Tensor> {
        let info = self.info(key)?;
        let (start, end) = info.data_offsets;
        let bytes = self
            .mmap
            .get(self.data_start + start..self.data_start + end)
            .ok_or_else(|| Error::format(&self.path, format!("tensor `{key}` lies outside the file")))?;
        let shape = Shape::new(info.shape.clone());
        let storage = match (info.dtype, to_dtype(info.dtype)) {
            (_, Some(stored)) => {
                let s = CpuStorage::from_bytes(stored, bytes)
                    .map_err(|e| Error::format(&self.path, format!("tensor `{key}`: {e}")))?;
                if stored.is_float() != dtype.is_float() {
                    return Err(Error::format(
                        &self.path,
                        format!("tensor `{key}` is {stored}, cannot load it as {dtype}"),
                    ));
                }
                s.window_to_dtype(0, s.len(), dtype)
            }
            (StDtype::F64, None) if dtype.is_float() => {
                let v: Vec<f32> = bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f32)
                    .collect();
                CpuStorage::F32(v).window_to_dtype(0, shape.numel(), dtype)
            }
            (other, None) => {
                return Err(Error::format(
                    &self.path,
                    format!("tensor `{key}` has dtype {other:?}, which revelio cannot load as {dtype}"),
                ))
            }
        };
        if storage.len() != shape.numel() {
            return Err(Error::format(
                &self.path,
                format!("tensor `{key}` holds {} elements, its shape {shape} needs {}", storage.len(), shape.numel()),
            ));
        }
        Tensor::from_storage(Storage::Cpu(storage), shape, dtype).to_device(device)
    }

    /// Rows `start..start + count` of the outer dim of `key`, converted to `dtype` (only the
    /// bytes of those rows are read from the map). The stored dtype must be one revelio holds.
    pub fn load_rows(&self, key: &str, start: usize, count: usize, dtype: DType, device: &Device) -> Result<Tensor> {
        let info = self.info(key)?;
        let stored = to_dtype(info.dtype).ok_or_else(|| {
            Error::format(&self.path, format!("tensor `{key}` has dtype {:?}, which revelio cannot load", info.dtype))
        })?;
        let outer = *info.shape.first().ok_or_else(|| Error::format(&self.path, format!("tensor `{key}` is a scalar")))?;
        if start + count > outer {
            return Err(Error::format(
                &self.path,
                format!("rows {start}..{} of tensor `{key}` are out of range (it has {outer})", start + count),
            ));
        }
        if stored.is_float() != dtype.is_float() {
            return Err(Error::format(&self.path, format!("tensor `{key}` is {stored}, cannot load it as {dtype}")));
        }
        let row_elems: usize = info.shape[1..].iter().product();
        let row_bytes = row_elems * stored.size_in_bytes();
        let begin = self.data_start + info.data_offsets.0 + start * row_bytes;
        let bytes = self
            .mmap
            .get(begin..begin + count * row_bytes)
            .ok_or_else(|| Error::format(&self.path, format!("tensor `{key}` lies outside the file")))?;
        let s = CpuStorage::from_bytes(stored, bytes)?;
        let mut dims = info.shape.clone();
        dims[0] = count;
        Tensor::from_storage(Storage::Cpu(s.window_to_dtype(0, count * row_elems, dtype)), dims, dtype).to_device(device)
    }

    /// Loads `key` and checks its shape is `expected`.
    pub fn load_shaped(&self, key: &str, expected: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let (shape, _) = self.shape_of(key)?;
        if shape.dims() != expected {
            return Err(Error::format(
                &self.path,
                format!("tensor `{key}` has shape {shape}, expected {}", Shape::from(expected)),
            ));
        }
        self.load(key, dtype, device)
    }

    /// Every tensor, each in its stored dtype (f64 as f32), on `device`.
    pub fn load_all(&self, device: &Device) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for key in self.keys() {
            let (_, st) = self.shape_of(&key)?;
            let dtype = to_dtype(st).unwrap_or(DType::F32);
            out.insert(key.clone(), self.load(&key, dtype, device)?);
        }
        Ok(out)
    }
}

struct HostView {
    dtype: StDtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl safetensors::tensor::View for HostView {
    fn dtype(&self) -> StDtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Writes `tensors` (name, tensor) to `path` atomically, each in its own dtype, with optional
/// `__metadata__` strings.
pub fn save_safetensors(
    path: impl AsRef<Path>,
    tensors: &[(&str, &Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let path = path.as_ref();
    let mut views = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let host = t.to_device(&Device::Cpu)?;
        let bytes = match host.dtype() {
            DType::F32 => bytemuck::cast_slice(host.cpu_slice::<f32>("save")?).to_vec(),
            DType::F16 => bytemuck::cast_slice(host.cpu_slice::<f16>("save")?).to_vec(),
            DType::BF16 => bytemuck::cast_slice(host.cpu_slice::<bf16>("save")?).to_vec(),
            DType::I64 => bytemuck::cast_slice(host.cpu_slice::<i64>("save")?).to_vec(),
            DType::I32 => bytemuck::cast_slice(host.cpu_slice::<i32>("save")?).to_vec(),
        };
        views.push((name.to_string(), HostView { dtype: from_dtype(t.dtype()), shape: t.dims().to_vec(), bytes }));
    }
    let buf = safetensors::tensor::serialize(views, metadata)
        .map_err(|e| Error::format(path, format!("cannot serialize: {e}")))?;
    super::write_atomic(path, &buf)
}
