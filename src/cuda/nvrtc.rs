//! NVRTC, the run-time CUDA C++ compiler: loaded by path (libs.rs), used to turn kernels/*.cu
//! into cubins for the GPU's architecture. Unlike cudarc's helper, `compile` keeps the program
//! log on success: it holds the ptxas resource report that `revelio kernels` reads.

use super::libs::{self, Lib};
use std::ffi::{c_char, c_int, CStr, CString};
use std::path::PathBuf;
use std::sync::OnceLock;

type Program = *mut std::ffi::c_void;
type Status = c_int;

struct Api {
    version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> Status,
    create: unsafe extern "C" fn(
        *mut Program,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> Status,
    compile: unsafe extern "C" fn(Program, c_int, *const *const c_char) -> Status,
    log_size: unsafe extern "C" fn(Program, *mut usize) -> Status,
    log: unsafe extern "C" fn(Program, *mut c_char) -> Status,
    cubin_size: unsafe extern "C" fn(Program, *mut usize) -> Status,
    cubin: unsafe extern "C" fn(Program, *mut c_char) -> Status,
    destroy: unsafe extern "C" fn(*mut Program) -> Status,
    error_string: unsafe extern "C" fn(Status) -> *const c_char,
    path: PathBuf,
    _lib: libs::Loaded,
}

fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(|| {
        let loaded = libs::load(Lib::Nvrtc)?;
        // SAFETY: the symbols are NVRTC's C API with the signatures declared in `Api`
        // (nvrtc.h, stable since CUDA 11.2); the library stays loaded inside `Api`.
        unsafe {
            macro_rules! sym {
                ($name:literal) => {
                    *loaded
                        .lib
                        .get($name)
                        .map_err(|e| format!("{}: {e}", loaded.path.display()))?
                };
            }
            Ok(Api {
                version: sym!(b"nvrtcVersion\0"),
                create: sym!(b"nvrtcCreateProgram\0"),
                compile: sym!(b"nvrtcCompileProgram\0"),
                log_size: sym!(b"nvrtcGetProgramLogSize\0"),
                log: sym!(b"nvrtcGetProgramLog\0"),
                cubin_size: sym!(b"nvrtcGetCUBINSize\0"),
                cubin: sym!(b"nvrtcGetCUBIN\0"),
                destroy: sym!(b"nvrtcDestroyProgram\0"),
                error_string: sym!(b"nvrtcGetErrorString\0"),
                path: loaded.path.clone(),
                _lib: loaded,
            })
        }
    })
    .as_ref()
    .map_err(|e| e.clone())
}

/// NVRTC's version and the file it was loaded from, or why it could not be loaded.
pub fn version() -> Result<((i32, i32), PathBuf), String> {
    let api = api()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: both pointers are valid for writes.
    let status = unsafe { (api.version)(&mut major, &mut minor) };
    check(api, status, "nvrtcVersion")?;
    Ok(((major, minor), api.path.clone()))
}

fn check(api: &Api, status: Status, what: &str) -> Result<(), String> {
    if status == 0 {
        return Ok(());
    }
    // SAFETY: nvrtcGetErrorString returns a static C string for any status.
    let msg = unsafe { CStr::from_ptr((api.error_string)(status)) };
    Err(format!("{what}: {}", msg.to_string_lossy()))
}

/// What one compilation produced.
pub struct Compiled {
    pub cubin: Vec<u8>,
    /// The program log: warnings, and the ptxas report when `-Xptxas=-v` was given.
    pub log: String,
}

/// Compiles `source` (named `name` in messages) with in-memory headers `(include name, text)`.
/// On failure the error holds the compiler log.
pub fn compile(name: &str, source: &str, headers: &[(&str, &str)], options: &[String]) -> Result<Compiled, String> {
    let api = api()?;
    let c_src = CString::new(source).map_err(|_| format!("{name}: source holds a NUL byte"))?;
    let c_name = CString::new(name).map_err(|_| format!("{name}: name holds a NUL byte"))?;
    let h_texts: Vec<CString> = headers.iter().map(|(_, t)| CString::new(*t).expect("header text without NUL")).collect();
    let h_names: Vec<CString> = headers.iter().map(|(n, _)| CString::new(*n).expect("header name without NUL")).collect();
    let h_text_ptrs: Vec<*const c_char> = h_texts.iter().map(|c| c.as_ptr()).collect();
    let h_name_ptrs: Vec<*const c_char> = h_names.iter().map(|c| c.as_ptr()).collect();
    let c_opts: Vec<CString> = options.iter().map(|o| CString::new(o.as_str()).expect("option without NUL")).collect();
    let opt_ptrs: Vec<*const c_char> = c_opts.iter().map(|c| c.as_ptr()).collect();

    let mut prog: Program = std::ptr::null_mut();
    // SAFETY: every pointer refers to a NUL-terminated string that outlives the call; the header
    // arrays have `headers.len()` entries.
    let status = unsafe {
        (api.create)(
            &mut prog,
            c_src.as_ptr(),
            c_name.as_ptr(),
            headers.len() as c_int,
            h_text_ptrs.as_ptr(),
            h_name_ptrs.as_ptr(),
        )
    };
    check(api, status, "nvrtcCreateProgram")?;

    // SAFETY: `prog` is a live program; option pointers outlive the call.
    let status = unsafe { (api.compile)(prog, opt_ptrs.len() as c_int, opt_ptrs.as_ptr()) };
    let log = program_log(api, prog);
    let result = if status != 0 {
        let what = check(api, status, "nvrtcCompileProgram").unwrap_err();
        Err(format!("{name}: {what}\n{log}"))
    } else {
        let mut size = 0usize;
        // SAFETY: `prog` compiled; `size` is valid for writes.
        let s = unsafe { (api.cubin_size)(prog, &mut size) };
        check(api, s, "nvrtcGetCUBINSize").and_then(|_| {
            let mut cubin = vec![0u8; size];
            // SAFETY: `cubin` has room for `size` bytes, as NVRTC reported.
            let s = unsafe { (api.cubin)(prog, cubin.as_mut_ptr() as *mut c_char) };
            check(api, s, "nvrtcGetCUBIN").map(|_| Compiled { cubin, log })
        })
    };
    // SAFETY: `prog` is live and destroyed once.
    unsafe { (api.destroy)(&mut prog) };
    result
}

fn program_log(api: &Api, prog: Program) -> String {
    let mut size = 0usize;
    // SAFETY: `prog` is a live program; `size` is valid for writes.
    if unsafe { (api.log_size)(prog, &mut size) } != 0 || size <= 1 {
        return String::new();
    }
    let mut buf = vec![0u8; size];
    // SAFETY: `buf` has room for `size` bytes including the terminating NUL.
    if unsafe { (api.log)(prog, buf.as_mut_ptr() as *mut c_char) } != 0 {
        return String::new();
    }
    buf.truncate(size - 1);
    String::from_utf8_lossy(&buf).into_owned()
}
