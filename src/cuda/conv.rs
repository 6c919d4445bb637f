//! Launchers for kernels/conv.cu (to be written).

use super::kernels::Kernel;

pub const KERNELS: &[Kernel] = &[];
