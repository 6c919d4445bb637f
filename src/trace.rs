//! Profiling ranges named after the module tree (`up_blocks.1.attentions.0`), so a profiler's
//! timeline reads like the model and `ncu --nvtx --nvtx-include "up_blocks.1/"` selects one
//! block's kernels. Models and trainers open their ranges here and never name a backend. A range
//! is an NVTX range when libnvToolsExt is found (cuda::nvtx, loaded at first use); without it, or
//! with `REVELIO_NVTX=0`, opening one costs one atomic load and records nothing, on any device.

pub use crate::cuda::nvtx::Range;

/// Opens a range named `name`, closed when the returned guard drops; nested ranges form the tree
/// a profiler shows.
pub fn range(name: &str) -> Range {
    crate::cuda::nvtx::range(name)
}
