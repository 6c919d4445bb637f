//! Launchers for kernels/optim.cu (to be written).

use super::kernels::Kernel;

pub const KERNELS: &[Kernel] = &[];
