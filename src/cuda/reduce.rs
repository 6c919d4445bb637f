//! Launchers for kernels/reduce.cu (to be written).

use super::kernels::Kernel;

pub const KERNELS: &[Kernel] = &[];
