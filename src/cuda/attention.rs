//! Launchers for kernels/attention.cu (to be written).

use super::kernels::Kernel;

pub const KERNELS: &[Kernel] = &[];
