//! Launchers for kernels/norm.cu (to be written).

use super::kernels::Kernel;

pub const KERNELS: &[Kernel] = &[];
