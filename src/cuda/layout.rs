//! Launchers for kernels/layout.cu (to be written).

use super::kernels::Kernel;

pub const KERNELS: &[Kernel] = &[];
