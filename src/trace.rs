//! Profiling ranges named after the module tree (`up_blocks.1.attentions.0`), so a profiler's
//! timeline reads like the model and `ncu --nvtx --nvtx-include "up_blocks.1/"` selects one
//! block's kernels. Models and trainers open their ranges here and never name a backend. A range
//! is an NVTX range when libnvToolsExt is found (cuda::nvtx, loaded at first use), and a module
//! of `revelio bench --profile`'s table while the profiler records (src/profile). With neither,
//! or with `REVELIO_NVTX=0` and no profile, opening one costs two atomic loads and records
//! nothing, on any device.

use crate::cuda::nvtx;
use crate::profile;

/// An open range; closed when dropped.
#[must_use = "the range closes when this guard is dropped"]
pub struct Range {
    _nvtx: nvtx::Range,
    _module: profile::ModuleGuard,
}

/// Opens a range named `name`, closed when the returned guard drops; nested ranges form the tree
/// a profiler shows.
pub fn range(name: &str) -> Range {
    Range { _nvtx: nvtx::range(name), _module: profile::module(name) }
}
