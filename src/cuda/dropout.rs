//! Launchers for kernels/dropout.cu (to be written).

use super::kernels::Kernel;

pub const KERNELS: &[Kernel] = &[];
