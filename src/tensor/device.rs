//! Device: the CPU (the f32 reference backend) or one CUDA GPU.

use crate::cuda::{probe, CudaDevice, Probe};
use crate::{Error, Result};
use std::fmt;
use std::sync::Arc;

#[derive(Clone)]
pub enum Device {
    Cpu,
    Cuda(Arc<CudaDevice>),
}

impl Device {
    /// CUDA device `ordinal`; the same context, stream and memory pool on every call.
    pub fn cuda(ordinal: usize) -> Result<Device> {
        Ok(Device::Cuda(CudaDevice::get(ordinal)?))
    }

    /// Parses `--device`: `cpu`, `cuda`, `cuda:N`, or `auto` (the first GPU if one is usable,
    /// else the CPU with a one-line notice on stderr).
    pub fn parse(s: &str) -> Result<Device> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "auto" => match probe() {
                Probe::Devices(_) => Device::cuda(0),
                other => {
                    eprintln!("revelio: {}; running on the CPU (f32)", other.reason());
                    Ok(Device::Cpu)
                }
            },
            "cuda" | "gpu" => Device::cuda(0),
            _ => {
                if let Some(n) = s.strip_prefix("cuda:") {
                    let ordinal = n.parse::<usize>().map_err(|_| {
                        Error::BadOption(format!("--device {s}: expected cuda:N with N a GPU number"))
                    })?;
                    return Device::cuda(ordinal);
                }
                Err(Error::BadOption(format!(
                    "--device {s}: expected one of auto, cpu, cuda, cuda:N"
                )))
            }
        }
    }

    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }

    pub fn is_cuda(&self) -> bool {
        matches!(self, Device::Cuda(_))
    }

    pub fn same(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Cuda(a), Device::Cuda(b)) => a.ordinal() == b.ordinal(),
            _ => false,
        }
    }

    /// Waits for all queued work on the device (a no-op on the CPU).
    pub fn synchronize(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::Cuda(d) => d.synchronize(),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(d) => write!(f, "cuda:{}", d.ordinal()),
        }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
