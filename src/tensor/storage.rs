//! Where a tensor's elements live: a typed host vector, or a block of device memory from the
//! device's caching allocator.

use super::dtype::{DType, Element};
use crate::cuda::DeviceBuffer;
use crate::{Error, Result};
use half::{bf16, f16};

#[derive(Clone, Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I64(Vec<i64>),
    I32(Vec<i32>),
}

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::BF16(_) => DType::BF16,
            CpuStorage::I64(_) => DType::I64,
            CpuStorage::I32(_) => DType::I32,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F16(v) => v.len(),
            CpuStorage::BF16(v) => v.len(),
            CpuStorage::I64(v) => v.len(),
            CpuStorage::I32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn zeros(dtype: DType, n: usize) -> Self {
        match dtype {
            DType::F32 => CpuStorage::F32(vec![0.0; n]),
            DType::F16 => CpuStorage::F16(vec![f16::ZERO; n]),
            DType::BF16 => CpuStorage::BF16(vec![bf16::ZERO; n]),
            DType::I64 => CpuStorage::I64(vec![0; n]),
            DType::I32 => CpuStorage::I32(vec![0; n]),
        }
    }

    /// The raw bytes, in the dtype's native little-endian layout.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            CpuStorage::F32(v) => bytemuck::cast_slice(v),
            CpuStorage::F16(v) => bytemuck::cast_slice(v),
            CpuStorage::BF16(v) => bytemuck::cast_slice(v),
            CpuStorage::I64(v) => bytemuck::cast_slice(v),
            CpuStorage::I32(v) => bytemuck::cast_slice(v),
        }
    }

    /// Builds storage of `dtype` from raw little-endian bytes (any alignment).
    pub fn from_bytes(dtype: DType, bytes: &[u8]) -> Result<Self> {
        let size = dtype.size_in_bytes();
        if bytes.len() % size != 0 {
            return Err(Error::Internal(format!(
                "{} bytes is not a whole number of {dtype} elements",
                bytes.len()
            )));
        }
        fn collect<T: Element>(bytes: &[u8]) -> Vec<T> {
            let mut out = vec![T::zeroed(); bytes.len() / std::mem::size_of::<T>()];
            bytemuck::cast_slice_mut::<T, u8>(&mut out).copy_from_slice(bytes);
            out
        }
        Ok(match dtype {
            DType::F32 => CpuStorage::F32(collect(bytes)),
            DType::F16 => CpuStorage::F16(collect(bytes)),
            DType::BF16 => CpuStorage::BF16(collect(bytes)),
            DType::I64 => CpuStorage::I64(collect(bytes)),
            DType::I32 => CpuStorage::I32(collect(bytes)),
        })
    }

    /// Converts a window of elements to f32 (ints are converted by value).
    pub fn window_to_f32(&self, start: usize, len: usize) -> Vec<f32> {
        let r = start..start + len;
        match self {
            CpuStorage::F32(v) => v[r].to_vec(),
            CpuStorage::F16(v) => v[r].iter().map(|x| x.to_f32()).collect(),
            CpuStorage::BF16(v) => v[r].iter().map(|x| x.to_f32()).collect(),
            CpuStorage::I64(v) => v[r].iter().map(|&x| x as f32).collect(),
            CpuStorage::I32(v) => v[r].iter().map(|&x| x as f32).collect(),
        }
    }

    /// Converts a window of elements to another dtype. Float to int truncates toward zero.
    pub fn window_to_dtype(&self, start: usize, len: usize, dtype: DType) -> CpuStorage {
        let r = start..start + len;
        match (self, dtype) {
            (CpuStorage::I64(v), DType::I32) => CpuStorage::I32(v[r].iter().map(|&x| x as i32).collect()),
            (CpuStorage::I32(v), DType::I64) => CpuStorage::I64(v[r].iter().map(|&x| x as i64).collect()),
            (CpuStorage::I64(v), DType::I64) => CpuStorage::I64(v[r].to_vec()),
            (CpuStorage::I32(v), DType::I32) => CpuStorage::I32(v[r].to_vec()),
            (CpuStorage::F16(v), DType::F16) => CpuStorage::F16(v[r].to_vec()),
            (CpuStorage::BF16(v), DType::BF16) => CpuStorage::BF16(v[r].to_vec()),
            _ => {
                let f = self.window_to_f32(start, len);
                match dtype {
                    DType::F32 => CpuStorage::F32(f),
                    DType::F16 => CpuStorage::F16(f.iter().map(|&x| f16::from_f32(x)).collect()),
                    DType::BF16 => CpuStorage::BF16(f.iter().map(|&x| bf16::from_f32(x)).collect()),
                    DType::I64 => CpuStorage::I64(f.iter().map(|&x| x as i64).collect()),
                    DType::I32 => CpuStorage::I32(f.iter().map(|&x| x as i32).collect()),
                }
            }
        }
    }
}

/// Typed access to host storage.
pub trait CpuSlice: Element {
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
    fn wrap(v: Vec<Self>) -> CpuStorage;
}

macro_rules! cpu_slice {
    ($t:ty, $variant:ident) => {
        impl CpuSlice for $t {
            fn slice(s: &CpuStorage) -> Option<&[Self]> {
                match s {
                    CpuStorage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
                match s {
                    CpuStorage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn wrap(v: Vec<Self>) -> CpuStorage {
                CpuStorage::$variant(v)
            }
        }
    };
}
cpu_slice!(f32, F32);
cpu_slice!(f16, F16);
cpu_slice!(bf16, BF16);
cpu_slice!(i64, I64);
cpu_slice!(i32, I32);

#[derive(Debug)]
pub enum Storage {
    Cpu(CpuStorage),
    Cuda(DeviceBuffer),
}

impl Storage {
    /// A deep copy (device memory is copied on the device's stream).
    pub fn try_clone(&self) -> Result<Storage> {
        Ok(match self {
            Storage::Cpu(s) => Storage::Cpu(s.clone()),
            Storage::Cuda(b) => Storage::Cuda(b.try_clone()?),
        })
    }
}
