//! The simulated CUDA device (sim/, built by `python3 sim/build.py`), selected by setting
//! `REVELIO_SIM` to its folder (`target/sim`). Its `libcuda.so` is loaded before cudarc looks
//! for a driver: cudarc opens `libcuda.so` by name, and the system loader hands back an already
//! loaded library whose SONAME matches, so every driver call of the unmodified CUDA path goes
//! to the simulator. cuBLAS then comes only from the same folder (a real cuBLAS cannot read the
//! simulator's memory). NVRTC stays the real one: the simulator loads the cubins it makes.
//!
//! Nobody gets the simulator by accident: it needs the variable, its device is named
//! `revelio-sim ...`, and `revelio info` and the first use of the device say so.

use libloading::Library;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The environment variable that selects the simulator.
pub const ENV: &str = "REVELIO_SIM";

/// A loaded simulator.
pub struct Simulator {
    pub dir: PathBuf,
    /// Its settings, from the library (`revelio_sim_describe`): thread order, cp.async mode.
    pub description: String,
    _lib: Library,
}

/// The simulator if `REVELIO_SIM` is set and it loads; `Err` says why it does not.
pub fn simulator() -> Option<Result<&'static Simulator, String>> {
    static SIM: OnceLock<Option<Result<Simulator, String>>> = OnceLock::new();
    SIM.get_or_init(|| std::env::var_os(ENV).filter(|v| !v.is_empty()).map(|dir| load(PathBuf::from(dir))))
        .as_ref()
        .map(|r| r.as_ref().map_err(|e| e.clone()))
}

/// The simulator's folder when one is selected (whether or not it loaded).
pub fn selected_dir() -> Option<PathBuf> {
    std::env::var_os(ENV).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn load(dir: PathBuf) -> Result<Simulator, String> {
    let path = dir.join("libcuda.so");
    if !path.is_file() {
        return Err(format!("{ENV}={}: no {} (build it with `python3 sim/build.py`)", dir.display(), path.display()));
    }
    // SAFETY: the simulator's initialisers only register its kernels.
    let lib = unsafe { Library::new(&path) }.map_err(|e| format!("{ENV}={}: cannot load {}: {e}", dir.display(), path.display()))?;
    // SAFETY: `revelio_sim_describe` returns a NUL-terminated string the library owns forever.
    let description = unsafe {
        lib.get::<unsafe extern "C" fn() -> *const std::ffi::c_char>(b"revelio_sim_describe\0")
            .map(|f| std::ffi::CStr::from_ptr(f()).to_string_lossy().into_owned())
    }
    .map_err(|_| format!("{}: not a revelio simulator (no revelio_sim_describe)", path.display()))?;
    Ok(Simulator { dir, description, _lib: lib })
}
