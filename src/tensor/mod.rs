//! Tensor: a shape, a dtype and contiguous row-major storage on one device. No autograd, no
//! strided views: ops take whole tensors and return new ones. Cloning a tensor is cheap (the
//! storage is shared); writing to one (`*_mut` accessors) copies the storage first if shared.
//! A tensor may be a window of its storage along the outer dim (`narrow0`), so batches of a
//! large tensor cost no copy.

mod device;
mod dtype;
mod shape;
mod storage;

pub use device::Device;
pub use dtype::{DType, Element};
pub use shape::Shape;
pub use storage::{CpuSlice, CpuStorage, Storage};

use crate::cuda::CudaDevice;
use crate::rng;
use crate::{Error, Result};
use std::sync::Arc;

#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    /// Start of this tensor's window in its storage, in elements.
    offset: usize,
    shape: Shape,
    dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({}, {}, {})", self.shape, self.dtype, self.device())
    }
}

impl Tensor {
    // ---------------------------------------------------------------- construction

    /// Wraps storage that holds exactly `shape.numel()` elements.
    pub fn from_storage(storage: Storage, shape: impl Into<Shape>, dtype: DType) -> Tensor {
        Tensor { storage: Arc::new(storage), offset: 0, shape: shape.into(), dtype }
    }

    /// A tensor of `data` on `device`; `data.len()` must equal the shape's element count.
    pub fn from_vec<T: CpuSlice>(data: Vec<T>, shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        if data.len() != shape.numel() {
            return Err(Error::op(
                "from_vec",
                format!("{} elements cannot fill shape {shape} ({} elements)", data.len(), shape.numel()),
            ));
        }
        let t = Tensor::from_storage(Storage::Cpu(T::wrap(data)), shape, T::DTYPE);
        t.to_device(device)
    }

    pub fn from_slice<T: CpuSlice>(data: &[T], shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape, device)
    }

    /// A rank-0 f32 tensor on the CPU.
    pub fn scalar(v: f32) -> Tensor {
        Tensor::from_storage(Storage::Cpu(CpuStorage::F32(vec![v])), Shape::new(vec![]), DType::F32)
    }

    pub fn zeros(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        match device {
            Device::Cpu => Ok(Tensor::from_storage(
                Storage::Cpu(CpuStorage::zeros(dtype, shape.numel())),
                shape,
                dtype,
            )),
            Device::Cuda(d) => {
                let buf = d.alloc_zeroed(shape.numel() * dtype.size_in_bytes())?;
                Ok(Tensor::from_storage(Storage::Cuda(buf), shape, dtype))
            }
        }
    }

    /// A float tensor filled with `value`.
    pub fn full(shape: impl Into<Shape>, value: f32, dtype: DType, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let n = shape.numel();
        let host = CpuStorage::F32(vec![value; n]).window_to_dtype(0, n, dtype);
        Tensor::from_storage(Storage::Cpu(host), shape, dtype).to_device(device)
    }

    /// Standard-normal f32 values from the counter-based generator: element i is
    /// `rng::normal(seed, i)`, the same on every device and for every batch split.
    pub fn randn(shape: impl Into<Shape>, seed: u64, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let data = rng::normal_vec(seed, 0, shape.numel());
        Tensor::from_vec(data, shape, device)
    }

    /// Uniform f32 values in [lo, hi) from the counter-based generator.
    pub fn rand_uniform(shape: impl Into<Shape>, lo: f32, hi: f32, seed: u64, device: &Device) -> Result<Tensor> {
        let shape = shape.into();
        let data: Vec<f32> = (0..shape.numel() as u64).map(|i| lo + (hi - lo) * rng::uniform(seed, i)).collect();
        Tensor::from_vec(data, shape, device)
    }

    // ---------------------------------------------------------------- metadata

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    pub fn rank(&self) -> usize {
        self.shape.rank()
    }

    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn size_in_bytes(&self) -> usize {
        self.numel() * self.dtype.size_in_bytes()
    }

    pub fn device(&self) -> Device {
        match self.storage.as_ref() {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(b) => Device::Cuda(b.device().clone()),
        }
    }

    pub fn dims1(&self, op: &'static str) -> Result<usize> {
        self.shape.dims1(op)
    }
    pub fn dims2(&self, op: &'static str) -> Result<(usize, usize)> {
        self.shape.dims2(op)
    }
    pub fn dims3(&self, op: &'static str) -> Result<(usize, usize, usize)> {
        self.shape.dims3(op)
    }
    pub fn dims4(&self, op: &'static str) -> Result<(usize, usize, usize, usize)> {
        self.shape.dims4(op)
    }

    // ---------------------------------------------------------------- shape changes (no copy)

    /// The same elements under another shape with the same element count.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let shape = shape.into();
        if shape.numel() != self.numel() {
            return Err(Error::op(
                "reshape",
                format!("cannot view shape {} ({} elements) as {shape}", self.shape, self.numel()),
            ));
        }
        Ok(Tensor { shape, ..self.clone() })
    }

    /// Rows `start..start + len` of the outermost dim, sharing storage.
    pub fn narrow0(&self, start: usize, len: usize) -> Result<Tensor> {
        let outer = *self.dims().first().ok_or_else(|| Error::op("narrow0", "rank-0 tensor"))?;
        if start + len > outer {
            return Err(Error::op(
                "narrow0",
                format!("rows {start}..{} out of range for shape {}", start + len, self.shape),
            ));
        }
        let row = self.numel() / outer.max(1);
        let mut dims = self.dims().to_vec();
        dims[0] = len;
        Ok(Tensor { offset: self.offset + start * row, shape: Shape::new(dims), ..self.clone() })
    }

    // ---------------------------------------------------------------- moves and conversions

    /// A copy on `device` (a cheap clone when it is already there).
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if self.device().same(device) {
            return Ok(self.clone());
        }
        match (self.storage.as_ref(), device) {
            (Storage::Cpu(s), Device::Cuda(d)) => {
                let bytes = &s.as_bytes()[self.byte_range()];
                let buf = d.htod_bytes(bytes)?;
                Ok(Tensor::from_storage(Storage::Cuda(buf), self.shape.clone(), self.dtype))
            }
            (Storage::Cuda(b), Device::Cpu) => {
                let bytes = b.device().dtoh_bytes(b.ptr() + (self.offset * self.dtype.size_in_bytes()) as u64, self.size_in_bytes())?;
                let s = CpuStorage::from_bytes(self.dtype, &bytes)?;
                Ok(Tensor::from_storage(Storage::Cpu(s), self.shape.clone(), self.dtype))
            }
            (Storage::Cuda(_), Device::Cuda(_)) => self.to_device(&Device::Cpu)?.to_device(device),
            (Storage::Cpu(_), Device::Cpu) => unreachable!("same device handled above"),
        }
    }

    /// The elements as a host vector of `T`; the dtype must be `T`'s.
    pub fn to_vec<T: CpuSlice>(&self) -> Result<Vec<T>> {
        if self.dtype != T::DTYPE {
            return Err(Error::op(
                "to_vec",
                format!("tensor {} is {}, asked for {}", self.shape, self.dtype, T::DTYPE),
            ));
        }
        let host = self.to_device(&Device::Cpu)?;
        Ok(host.cpu_slice::<T>("to_vec")?.to_vec())
    }

    /// The elements converted to f32 on the host, whatever the dtype and device.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        let host = self.to_device(&Device::Cpu)?;
        match host.storage.as_ref() {
            Storage::Cpu(s) => Ok(s.window_to_f32(host.offset, host.numel())),
            Storage::Cuda(_) => unreachable!("moved to the CPU above"),
        }
    }

    /// The single element of a one-element tensor, as f32.
    pub fn to_scalar(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::op("to_scalar", format!("tensor of shape {} is not a scalar", self.shape)));
        }
        Ok(self.to_f32_vec()?[0])
    }

    /// A deep copy with its own storage.
    pub fn deep_clone(&self) -> Result<Tensor> {
        match self.storage.as_ref() {
            Storage::Cpu(s) => {
                let out = s.window_to_dtype(self.offset, self.numel(), self.dtype);
                Ok(Tensor::from_storage(Storage::Cpu(out), self.shape.clone(), self.dtype))
            }
            Storage::Cuda(b) => {
                let d = b.device();
                let out = d.alloc(self.size_in_bytes())?;
                d.copy_dtod(self.cuda_ptr()?, out.ptr(), self.size_in_bytes())?;
                Ok(Tensor::from_storage(Storage::Cuda(out), self.shape.clone(), self.dtype))
            }
        }
    }

    // ---------------------------------------------------------------- backend access

    fn byte_range(&self) -> std::ops::Range<usize> {
        let size = self.dtype.size_in_bytes();
        self.offset * size..(self.offset + self.numel()) * size
    }

    /// This tensor's elements on the host, typed. Errors name `op` if the tensor is not a host
    /// tensor of `T`.
    pub fn cpu_slice<T: CpuSlice>(&self, op: &'static str) -> Result<&[T]> {
        match self.storage.as_ref() {
            Storage::Cpu(s) => match T::slice(s) {
                Some(v) => Ok(&v[self.offset..self.offset + self.numel()]),
                None => Err(Error::op(
                    op,
                    format!(
                        "the CPU backend takes {} here, got a {} tensor of shape {} (convert with to_dtype)",
                        T::DTYPE,
                        self.dtype,
                        self.shape
                    ),
                )),
            },
            Storage::Cuda(_) => Err(Error::op(op, format!("expected a CPU tensor, got one on {}", self.device()))),
        }
    }

    /// This host tensor's storage and the element offset of its window in it.
    pub fn cpu_storage(&self, op: &'static str) -> Result<(&CpuStorage, usize)> {
        match self.storage.as_ref() {
            Storage::Cpu(s) => Ok((s, self.offset)),
            Storage::Cuda(_) => Err(Error::op(op, format!("expected a CPU tensor, got one on {}", self.device()))),
        }
    }

    /// Shorthand for `cpu_slice::<f32>`.
    pub fn cpu_f32(&self, op: &'static str) -> Result<&[f32]> {
        self.cpu_slice::<f32>(op)
    }

    /// Mutable typed host elements; copies the storage first if it is shared.
    pub fn cpu_slice_mut<T: CpuSlice>(&mut self, op: &'static str) -> Result<&mut [T]> {
        if self.dtype != T::DTYPE || !self.device().is_cpu() {
            return Err(Error::op(
                op,
                format!("expected a CPU {} tensor, got a {} tensor on {}", T::DTYPE, self.dtype, self.device()),
            ));
        }
        let (offset, n) = (self.offset, self.numel());
        let storage = self.unique_storage()?;
        match storage {
            Storage::Cpu(s) => Ok(&mut T::slice_mut(s).expect("dtype checked above")[offset..offset + n]),
            Storage::Cuda(_) => unreachable!("device checked above"),
        }
    }

    /// Shorthand for `cpu_slice_mut::<f32>`.
    pub fn cpu_f32_mut(&mut self, op: &'static str) -> Result<&mut [f32]> {
        self.cpu_slice_mut::<f32>(op)
    }

    /// The device address of this tensor's first element.
    pub fn cuda_ptr(&self) -> Result<u64> {
        match self.storage.as_ref() {
            Storage::Cuda(b) => Ok(b.ptr() + (self.offset * self.dtype.size_in_bytes()) as u64),
            Storage::Cpu(_) => Err(Error::op("cuda_ptr", format!("tensor {} is on the CPU", self.shape))),
        }
    }

    /// The device address of this tensor's first element, for writing: copies the storage
    /// first if it is shared, so no other tensor sees the write.
    pub fn cuda_ptr_mut(&mut self) -> Result<u64> {
        let offset_bytes = (self.offset * self.dtype.size_in_bytes()) as u64;
        match self.unique_storage()? {
            Storage::Cuda(b) => Ok(b.ptr() + offset_bytes),
            Storage::Cpu(_) => Err(Error::op("cuda_ptr_mut", format!("tensor {} is on the CPU", self.shape))),
        }
    }

    /// The CUDA device this tensor lives on.
    pub fn cuda_device(&self) -> Result<&Arc<CudaDevice>> {
        match self.storage.as_ref() {
            Storage::Cuda(b) => Ok(b.device()),
            Storage::Cpu(_) => Err(Error::op("cuda_device", format!("tensor {} is on the CPU", self.shape))),
        }
    }

    fn unique_storage(&mut self) -> Result<&mut Storage> {
        if Arc::get_mut(&mut self.storage).is_none() {
            self.storage = Arc::new(self.storage.try_clone()?);
        }
        Ok(Arc::get_mut(&mut self.storage).expect("storage made unique above"))
    }
}
