//! One CUDA GPU: its context, its one stream (all work is ordered on it), its memory pool, its
//! loaded kernel modules and function handles (each module compiled and loaded once), and its
//! cuBLAS handle. `CudaDevice::get(n)` returns the same device on every call.

use super::alloc::{DeviceBuffer, MemoryStats, Pool};
use super::compile;
use super::cublas::Blas;
use super::kernels::{Kernel, Module};
use crate::tensor::DType;
use crate::{Error, Result};
use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{result, CudaContext, CudaEvent, CudaFunction, CudaModule, CudaStream};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// What the driver says about one GPU.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub total_memory: usize,
    pub multiprocessors: usize,
    /// Shared memory one block can opt in to, in bytes.
    pub max_shared_per_block: usize,
}

impl DeviceInfo {
    /// The NVRTC architecture name, e.g. `sm_90`.
    pub fn arch(&self) -> String {
        format!("sm_{}{}", self.compute_capability.0, self.compute_capability.1)
    }
}

pub struct CudaDevice {
    info: DeviceInfo,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    pool: Pool,
    modules: Mutex<HashMap<Module, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    /// Dynamic shared memory each function has been allowed (above the default 48 KiB).
    smem_optin: Mutex<HashMap<String, usize>>,
    blas: OnceLock<std::result::Result<Blas, String>>,
    poison: AtomicBool,
}

static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();

impl CudaDevice {
    /// The device with this ordinal, created on first use.
    pub fn get(ordinal: usize) -> Result<Arc<CudaDevice>> {
        let map = DEVICES.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = map.lock().expect("device registry lock");
        if let Some(d) = map.get(&ordinal) {
            return Ok(d.clone());
        }
        let d = Arc::new(CudaDevice::create(ordinal)?);
        map.insert(ordinal, d.clone());
        Ok(d)
    }

    fn create(ordinal: usize) -> Result<CudaDevice> {
        let infos = match super::probe() {
            super::Probe::Devices(infos) => infos,
            other => return Err(Error::Cuda(format!("--device cuda: {}", other.reason()))),
        };
        let info = infos.into_iter().find(|i| i.ordinal == ordinal).ok_or_else(|| {
            Error::Cuda(format!("no CUDA device {ordinal} (found {} device(s))", super::device_count()))
        })?;
        if let Some(Ok(sim)) = super::sim::simulator() {
            eprintln!(
                "note: cuda:{ordinal} is the SIMULATED device ({}={}; {}): kernels run as host code on the CPU",
                super::sim::ENV,
                sim.dir.display(),
                sim.description
            );
        }
        let ctx = CudaContext::new(ordinal)?;
        let stream = ctx.new_stream()?;
        Ok(CudaDevice {
            info,
            ctx,
            stream,
            pool: Pool::default(),
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            smem_optin: Mutex::new(HashMap::new()),
            blas: OnceLock::new(),
            poison: AtomicBool::new(false),
        })
    }

    pub fn ordinal(&self) -> usize {
        self.info.ordinal
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn memory_stats(&self) -> MemoryStats {
        self.pool.stats()
    }

    pub fn reset_peak_memory(&self) {
        self.pool.reset_peak()
    }

    /// When on, every new buffer is filled with 0xFF bytes (NaN in f32, f16 and bf16), so a
    /// kernel that leaves an output element unwritten shows up in tests.
    pub fn set_poison(&self, on: bool) {
        self.poison.store(on, Ordering::Relaxed);
    }

    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize()?;
        Ok(())
    }

    /// An event recorded now on the stream, with timing enabled.
    pub fn record_event(&self) -> Result<CudaEvent> {
        Ok(self.stream.record_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))?)
    }

    // ---------------------------------------------------------------- memory

    /// A buffer of at least `bytes` (contents undefined, or NaN when poisoning is on).
    pub fn alloc(self: &Arc<Self>, bytes: usize) -> Result<DeviceBuffer> {
        self.ctx.bind_to_thread()?;
        let (ptr, size) = self.pool.take(
            bytes,
            |n| {
                // SAFETY: the context is current on this thread (bound above).
                unsafe { result::malloc_sync(n) }.map_err(|e| {
                    Error::Cuda(format!("cannot allocate {n} bytes on cuda:{}: {e}", self.info.ordinal))
                })
            },
            |p| {
                // SAFETY: `p` came from malloc_sync and is in no tensor (it was on the free list).
                let _ = unsafe { result::free_sync(p) };
            },
        )?;
        let buf = DeviceBuffer::new(ptr, size, self.clone());
        if self.poison.load(Ordering::Relaxed) {
            // SAFETY: `ptr` holds `size` bytes owned by `buf`.
            unsafe { result::memset_d8_async(ptr, 0xff, size, self.stream.cu_stream()) }?;
        }
        Ok(buf)
    }

    /// A buffer of `bytes` zero bytes.
    pub fn alloc_zeroed(self: &Arc<Self>, bytes: usize) -> Result<DeviceBuffer> {
        let buf = self.alloc(bytes)?;
        if bytes > 0 {
            // SAFETY: the buffer holds at least `bytes` bytes.
            unsafe { result::memset_d8_async(buf.ptr(), 0, bytes, self.stream.cu_stream()) }?;
        }
        Ok(buf)
    }

    /// Copies host bytes into a new buffer.
    pub fn htod_bytes(self: &Arc<Self>, bytes: &[u8]) -> Result<DeviceBuffer> {
        let buf = self.alloc(bytes.len())?;
        if !bytes.is_empty() {
            // SAFETY: the buffer holds at least `bytes.len()` bytes; the copy is complete when the
            // stream is synchronised below, before `bytes` can be freed by the caller.
            unsafe { result::memcpy_htod_async(buf.ptr(), bytes, self.stream.cu_stream()) }?;
            self.synchronize()?;
        }
        Ok(buf)
    }

    /// Copies `n` bytes at device address `src` to the host, after all queued work.
    pub fn dtoh_bytes(&self, src: u64, n: usize) -> Result<Vec<u8>> {
        let mut out = vec![0u8; n];
        if n > 0 {
            self.ctx.bind_to_thread()?;
            // SAFETY: `src` points at `n` readable device bytes (the caller's tensor); `out` has
            // room for `n` bytes and outlives the synchronisation below.
            unsafe { result::memcpy_dtoh_async(&mut out, src, self.stream.cu_stream()) }?;
            self.synchronize()?;
        }
        Ok(out)
    }

    /// Queues a device-to-device copy of `n` bytes.
    pub fn copy_dtod(&self, src: u64, dst: u64, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.ctx.bind_to_thread()?;
        // SAFETY: both ranges are `n` bytes of live device memory owned by the caller's tensors.
        unsafe { result::memcpy_dtod_async(dst, src, n, self.stream.cu_stream()) }?;
        Ok(())
    }

    // ---------------------------------------------------------------- kernels

    fn module(&self, module: Module) -> Result<Arc<CudaModule>> {
        let mut modules = self.modules.lock().expect("module cache lock");
        if let Some(m) = modules.get(&module) {
            return Ok(m.clone());
        }
        let cubin = compile::cubin(module, &self.info.arch())?;
        let m = self.ctx.load_module(cudarc::nvrtc::Ptx::from_binary(cubin)).map_err(|e| Error::Kernel {
            module: module.file_name().into(),
            msg: format!("cannot load on cuda:{} ({}): {e}", self.info.ordinal, self.info.arch()),
        })?;
        modules.insert(module, m.clone());
        Ok(m)
    }

    /// The function handle of `kernel` for `dtype` (compiled and loaded on first use).
    pub fn function(&self, kernel: &Kernel, dtype: DType) -> Result<CudaFunction> {
        if !kernel.supports(dtype) {
            return Err(Error::Cuda(format!("kernel {} has no {dtype} variant", kernel.stem)));
        }
        let name = kernel.name(dtype);
        if let Some(f) = self.functions.lock().expect("function cache lock").get(&name) {
            return Ok(f.clone());
        }
        let module = self.module(kernel.module)?;
        let f = module.load_function(&name).map_err(|e| Error::Kernel {
            module: kernel.module.file_name().into(),
            msg: format!("no function {name}: {e}"),
        })?;
        self.functions.lock().expect("function cache lock").insert(name, f.clone());
        Ok(f)
    }

    /// Like `function`, and lets the kernel take `smem_bytes` of dynamic shared memory (above
    /// the default 48 KiB needs an opt-in per function).
    pub fn function_with_smem(&self, kernel: &Kernel, dtype: DType, smem_bytes: usize) -> Result<CudaFunction> {
        let f = self.function(kernel, dtype)?;
        if smem_bytes > self.info.max_shared_per_block {
            return Err(Error::Cuda(format!(
                "kernel {} needs {smem_bytes} bytes of shared memory; {} allows {}",
                kernel.name(dtype),
                self.info.name,
                self.info.max_shared_per_block
            )));
        }
        if smem_bytes > 48 * 1024 {
            // The opt-in is a property of the function: raised once to the most asked for, not
            // set again on every launch.
            let name = kernel.name(dtype);
            let mut optin = self.smem_optin.lock().expect("smem opt-in lock");
            if optin.get(&name).is_none_or(|&have| have < smem_bytes) {
                // SAFETY: a valid function handle and an attribute value within the device's limit.
                unsafe {
                    result::function::set_function_attribute(
                        f.cu_function(),
                        CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                        smem_bytes as i32,
                    )
                }?;
                optin.insert(name, smem_bytes);
            }
        }
        Ok(f)
    }

    /// The device's cuBLAS handle, bound to its stream.
    pub fn blas(&self) -> Result<&Blas> {
        self.blas
            .get_or_init(|| {
                self.ctx.bind_to_thread().map_err(|e| e.to_string())?;
                Blas::new(self.stream.cu_stream() as *mut std::ffi::c_void)
            })
            .as_ref()
            .map_err(|e| Error::Cuda(e.clone()))
    }
}
