//! Launchers for kernels/pool.cu (to be written).

use super::kernels::Kernel;

pub const KERNELS: &[Kernel] = &[];
