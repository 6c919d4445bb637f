//! Finds and loads the CUDA libraries revelio opens at run time: NVRTC (kernel compiler),
//! cuBLAS (plain GEMMs) and NVTX (profiler ranges). The driver (libcuda) is loaded by cudarc.
//!
//! Search order for each library:
//! 1. an explicit file: `REVELIO_NVRTC`, `REVELIO_CUBLAS`, `REVELIO_NVTX`;
//! 2. folders: `REVELIO_CUDA_LIB_DIR` (colon-separated), `$CUDA_HOME/lib64`, `$CUDA_PATH/lib64`,
//!    `/usr/local/cuda/lib64`, and the pip wheels' folders (`nvidia/cuda_nvrtc/lib`,
//!    `nvidia/cublas/lib`, `nvidia/nvtx/lib`) under `REVELIO_PY_SITE`, `$VIRTUAL_ENV` and
//!    `~/.local`;
//! 3. the plain library names, through the system loader (`LD_LIBRARY_PATH`, ldconfig).
//!
//! With the simulated device selected (`REVELIO_SIM`, sim.rs), cuBLAS comes from its folder only.
//!
//! Libraries are opened by full path, so `LD_LIBRARY_PATH` need not be set (cargo overrides it
//! in `.cargo/config.toml` anyway). Any CUDA major version 11 to 13 is accepted.

use libloading::Library;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lib {
    Nvrtc,
    Cublas,
    Nvtx,
}

impl Lib {
    fn env_var(self) -> &'static str {
        match self {
            Lib::Nvrtc => "REVELIO_NVRTC",
            Lib::Cublas => "REVELIO_CUBLAS",
            Lib::Nvtx => "REVELIO_NVTX",
        }
    }

    /// File names, newest first.
    fn file_names(self) -> &'static [&'static str] {
        match self {
            Lib::Nvrtc => &["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"],
            Lib::Cublas => &["libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"],
            Lib::Nvtx => &["libnvToolsExt.so.1", "libnvToolsExt.so"],
        }
    }

    /// The pip wheel's folder under `site-packages`.
    fn wheel_dir(self) -> &'static str {
        match self {
            Lib::Nvrtc => "nvidia/cuda_nvrtc/lib",
            Lib::Cublas => "nvidia/cublas/lib",
            Lib::Nvtx => "nvidia/nvtx/lib",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Lib::Nvrtc => "NVRTC",
            Lib::Cublas => "cuBLAS",
            Lib::Nvtx => "NVTX",
        }
    }
}

/// A loaded library and where it came from.
pub struct Loaded {
    pub lib: Library,
    pub path: PathBuf,
    /// Libraries it needs that were loaded first from the same folder (kept alive with it).
    _deps: Vec<Library>,
}

fn site_packages_roots() -> Vec<PathBuf> {
    let mut roots = Vec::new();
    if let Ok(s) = std::env::var("REVELIO_PY_SITE") {
        roots.extend(std::env::split_paths(&s));
    }
    let mut lib_dirs = Vec::new();
    if let Ok(v) = std::env::var("VIRTUAL_ENV") {
        lib_dirs.push(PathBuf::from(v).join("lib"));
    }
    if let Ok(h) = std::env::var("HOME") {
        lib_dirs.push(PathBuf::from(h).join(".local/lib"));
    }
    for dir in lib_dirs {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let p = e.path().join("site-packages");
                if p.is_dir() {
                    roots.push(p);
                }
            }
        }
    }
    roots
}

fn candidate_dirs(lib: Lib) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(s) = std::env::var("REVELIO_CUDA_LIB_DIR") {
        dirs.extend(std::env::split_paths(&s));
    }
    for var in ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"] {
        if let Ok(v) = std::env::var(var) {
            dirs.push(PathBuf::from(v).join("lib64"));
        }
    }
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    for root in site_packages_roots() {
        dirs.push(root.join(lib.wheel_dir()));
    }
    dirs
}

fn open(path: &Path) -> Result<Library, String> {
    // SAFETY: loading a CUDA library runs its initialisers, which have no preconditions.
    unsafe { Library::new(path) }.map_err(|e| format!("{}: {e}", path.display()))
}

/// cuBLAS needs cuBLASLt from the same folder; load it first so the loader finds it.
fn deps_of(lib: Lib, file: &Path) -> Vec<Library> {
    if lib != Lib::Cublas {
        return Vec::new();
    }
    let Some(dir) = file.parent() else { return Vec::new() };
    let Some(name) = file.file_name().and_then(|n| n.to_str()) else { return Vec::new() };
    let lt_name = name.replacen("libcublas", "libcublasLt", 1);
    open(&dir.join(lt_name)).into_iter().collect()
}

/// Loads `lib`, or says where it looked.
pub fn load(lib: Lib) -> Result<Loaded, String> {
    if lib == Lib::Cublas {
        if let Some(dir) = super::sim::selected_dir() {
            let path = dir.join("libcublas.so.12");
            let l = open(&path).map_err(|e| format!("cuBLAS of the simulated device ({}): {e}", super::sim::ENV))?;
            return Ok(Loaded { lib: l, path, _deps: Vec::new() });
        }
    }
    if let Ok(p) = std::env::var(lib.env_var()) {
        let path = PathBuf::from(p);
        let deps = deps_of(lib, &path);
        let l = open(&path).map_err(|e| format!("{} (from {}): {e}", lib.name(), lib.env_var()))?;
        return Ok(Loaded { lib: l, path, _deps: deps });
    }
    let dirs = candidate_dirs(lib);
    for dir in &dirs {
        for name in lib.file_names() {
            let path = dir.join(name);
            if path.is_file() {
                let deps = deps_of(lib, &path);
                if let Ok(l) = open(&path) {
                    return Ok(Loaded { lib: l, path, _deps: deps });
                }
            }
        }
    }
    for name in lib.file_names() {
        if let Ok(l) = open(Path::new(name)) {
            return Ok(Loaded { lib: l, path: PathBuf::from(name), _deps: Vec::new() });
        }
    }
    Err(format!(
        "{} not found: set {} to the library file, or REVELIO_CUDA_LIB_DIR to its folder \
         (looked in {} and on the system library path for {})",
        lib.name(),
        lib.env_var(),
        dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        lib.file_names().join(", ")
    ))
}
