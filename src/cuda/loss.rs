//! Launchers for kernels/loss.cu (to be written).

use super::kernels::Kernel;

pub const KERNELS: &[Kernel] = &[];
