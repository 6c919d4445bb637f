//! NVTX ranges, so an Nsight Systems timeline reads as the module tree and
//! `ncu --nvtx --nvtx-include "up_blocks.1/"` selects one block's kernels. libnvToolsExt is
//! loaded at first use (libs.rs: `REVELIO_NVTX`, the CUDA toolkit, or the `nvidia-nvtx-cu12`
//! wheel); without it every range is a no-op costing one atomic load.

use super::libs::{self, Lib};
use std::ffi::{c_char, c_int, CString};
use std::sync::OnceLock;

struct Api {
    push: unsafe extern "C" fn(*const c_char) -> c_int,
    pop: unsafe extern "C" fn() -> c_int,
    _lib: libs::Loaded,
}

fn api() -> Option<&'static Api> {
    static API: OnceLock<Option<Api>> = OnceLock::new();
    API.get_or_init(|| {
        if std::env::var("REVELIO_NVTX").is_ok_and(|v| v == "0") {
            return None;
        }
        let loaded = libs::load(Lib::Nvtx).ok()?;
        // SAFETY: NVTX v2 C API symbols with the declared signatures (nvToolsExt.h).
        unsafe {
            let push = *loaded.lib.get(b"nvtxRangePushA\0").ok()?;
            let pop = *loaded.lib.get(b"nvtxRangePop\0").ok()?;
            Some(Api { push, pop, _lib: loaded })
        }
    })
    .as_ref()
}

/// An open NVTX range; closed when dropped.
#[must_use = "the range closes when this guard is dropped"]
pub struct Range {
    open: bool,
}

/// Opens a range named `name` (nested ranges form the tree Nsight shows).
pub fn range(name: &str) -> Range {
    match api() {
        Some(api) => {
            let c = CString::new(name.replace('\0', " ")).expect("NUL bytes replaced");
            // SAFETY: a NUL-terminated string valid for the call; NVTX copies it.
            unsafe { (api.push)(c.as_ptr()) };
            Range { open: true }
        }
        None => Range { open: false },
    }
}

impl Drop for Range {
    fn drop(&mut self) {
        if self.open {
            if let Some(api) = api() {
                // SAFETY: pops the range this guard pushed.
                unsafe { (api.pop)() };
            }
        }
    }
}

/// Whether NVTX ranges are being emitted.
pub fn enabled() -> bool {
    api().is_some()
}
