//! The CUDA backend: device discovery, the device (context, stream, caching allocator, kernel
//! modules, cuBLAS), run-time kernel compilation, and one launcher file per op family
//! (`src/cuda/<family>.rs` launches the kernels of `kernels/<family>.cu`).
//!
//! Everything loads at run time: the driver through cudarc's dynamic loading, NVRTC, cuBLAS and
//! NVTX through libs.rs. A machine with no CUDA builds and runs revelio on the CPU, and runs the
//! CUDA path on the simulated device (sim.rs) when `REVELIO_SIM` selects it.

mod alloc;
pub mod compile;
pub mod cublas;
mod device;
pub mod kernels;
pub mod launch;
pub mod libs;
pub mod nvrtc;
pub mod nvtx;
pub mod sim;

pub mod attention;
pub mod conv;
pub mod dropout;
pub mod elementwise;
pub mod gemm;
pub mod layout;
pub mod loss;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod sae;
pub mod softmax;

pub use alloc::{size_class, DeviceBuffer, MemoryStats};
pub use device::{CudaDevice, DeviceInfo};
/// A timing event on a device's stream (`CudaDevice::record_event`), as the profiler holds it.
pub use cudarc::driver::CudaEvent;

use cudarc::driver::{result, sys};

/// What a look for GPUs found.
#[derive(Debug, Clone)]
pub enum Probe {
    /// The driver library (libcuda) is not installed.
    NoDriver,
    /// The driver loaded but failed to initialise (e.g. no kernel module, a container without GPUs).
    DriverError(String),
    /// The driver works and sees no GPU.
    NoDevice,
    Devices(Vec<DeviceInfo>),
}

impl Probe {
    /// One line saying why no GPU can be used (empty for `Devices`).
    pub fn reason(&self) -> String {
        match self {
            Probe::NoDriver => "no CUDA driver (libcuda.so not found)".into(),
            Probe::DriverError(e) => format!("the CUDA driver failed to initialise ({e})"),
            Probe::NoDevice => "the CUDA driver sees no GPU".into(),
            Probe::Devices(_) => String::new(),
        }
    }
}

/// Looks for GPUs without ever panicking (cudarc panics if asked for a context with no driver).
pub fn probe() -> Probe {
    if let Some(Err(e)) = sim::simulator() {
        return Probe::DriverError(e);
    }
    // SAFETY: only checks whether the driver library can be opened.
    if !unsafe { sys::is_culib_present() } {
        return Probe::NoDriver;
    }
    if let Err(e) = result::init() {
        return Probe::DriverError(e.to_string());
    }
    let count = match result::device::get_count() {
        Ok(c) => c,
        Err(e) => return Probe::DriverError(e.to_string()),
    };
    if count <= 0 {
        return Probe::NoDevice;
    }
    let mut infos = Vec::new();
    for ordinal in 0..count {
        match device_info(ordinal as usize) {
            Ok(i) => infos.push(i),
            Err(e) => return Probe::DriverError(e),
        }
    }
    Probe::Devices(infos)
}

fn device_count() -> usize {
    result::device::get_count().map(|c| c.max(0) as usize).unwrap_or(0)
}

fn device_info(ordinal: usize) -> Result<DeviceInfo, String> {
    use sys::CUdevice_attribute as A;
    let dev = result::device::get(ordinal as i32).map_err(|e| e.to_string())?;
    // SAFETY: `dev` is a valid device handle from cuDeviceGet.
    let attr = |a: A| unsafe { result::device::get_attribute(dev, a) }.map_err(|e| e.to_string());
    Ok(DeviceInfo {
        ordinal,
        name: result::device::get_name(dev).map_err(|e| e.to_string())?,
        compute_capability: (
            attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        ),
        // SAFETY: as above.
        total_memory: unsafe { result::device::total_mem(dev) }.map_err(|e| e.to_string())?,
        multiprocessors: attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as usize,
        max_shared_per_block: attr(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)? as usize,
    })
}

/// The driver's CUDA version, e.g. (12, 8).
pub fn driver_version() -> Option<(i32, i32)> {
    let mut v = 0i32;
    // SAFETY: `v` is valid for writes; only called after `probe` found the driver.
    let ok = unsafe { sys::cuDriverGetVersion(&mut v) } == sys::CUresult::CUDA_SUCCESS;
    ok.then_some((v / 1000, (v % 1000) / 10))
}
