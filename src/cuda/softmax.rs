//! Launchers for kernels/softmax.cu (to be written).

use super::kernels::Kernel;

pub const KERNELS: &[Kernel] = &[];
