//! Launch-shape helpers shared by the launchers, and the small by-value parameter structs that
//! several kernels take (they mirror structs in kernels/common.cuh).

use crate::{Error, Result};
pub use cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};

/// Most blocks a 1D grid may have in x.
const MAX_GRID_X: usize = i32::MAX as usize;

/// A 1D launch covering `n` threads in blocks of `block` (grid-stride kernels may cap the grid).
pub fn cfg_1d(n: usize, block: u32) -> LaunchConfig {
    let blocks = n.div_ceil(block as usize).clamp(1, MAX_GRID_X) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (block, 1, 1), shared_mem_bytes: 0 }
}

/// A 1D grid of `blocks` blocks of `threads` with `smem` bytes of dynamic shared memory.
pub fn cfg_blocks(blocks: usize, threads: u32, smem: usize) -> Result<LaunchConfig> {
    if blocks == 0 || blocks > MAX_GRID_X {
        return Err(Error::Cuda(format!("grid of {blocks} blocks is out of range")));
    }
    Ok(LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: smem as u32 })
}

/// Converts a size to the i32 most kernels index with, or says which size is too large.
pub fn to_i32(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::Cuda(format!("{what} = {v} exceeds the kernels' 32-bit index range")))
}

/// Up to this many dims in the by-value shape structs.
pub const MAX_DIMS: usize = 6;

/// Dims and strides of a broadcast or permuted operand, passed to kernels by value.
/// Mirrors `struct Dims` in kernels/common.cuh.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Dims {
    pub rank: i32,
    pub size: [i64; MAX_DIMS],
    pub stride: [i64; MAX_DIMS],
}

// SAFETY: a plain `repr(C)` struct of integers, laid out as the C struct in common.cuh.
unsafe impl DeviceRepr for Dims {}

impl Dims {
    pub fn new(size: &[usize], stride: &[usize]) -> Result<Dims> {
        if size.len() > MAX_DIMS || size.len() != stride.len() {
            return Err(Error::Cuda(format!("rank {} is over the kernels' limit of {MAX_DIMS}", size.len())));
        }
        let mut d = Dims { rank: size.len() as i32, ..Default::default() };
        for i in 0..size.len() {
            d.size[i] = size[i] as i64;
            d.stride[i] = stride[i] as i64;
        }
        Ok(d)
    }
}
