//! cuBLAS for plain GEMMs, loaded by path (libs.rs) so that any CUDA major version works. Only
//! `cublasGemmStridedBatchedEx` is used: f32, f16 and bf16 storage, f32 accumulation
//! (`CUBLAS_COMPUTE_32F`: no TF32 for f32 inputs, so f32 results match the CPU to ~1e-6).

use super::libs::{self, Lib};
use crate::tensor::DType;
use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

type Handle = *mut c_void;
type Status = c_int;

const CUBLAS_OP_N: c_int = 0;
const CUBLAS_OP_T: c_int = 1;
const CUDA_R_32F: c_int = 0;
const CUDA_R_16F: c_int = 2;
const CUDA_R_16BF: c_int = 14;
const CUBLAS_COMPUTE_32F: c_int = 68;
const CUBLAS_GEMM_DEFAULT: c_int = -1;

type GemmStridedBatchedEx = unsafe extern "C" fn(
    Handle,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    *const c_void,
    *const c_void,
    c_int,
    c_int,
    i64,
    *const c_void,
    c_int,
    c_int,
    i64,
    *const c_void,
    *mut c_void,
    c_int,
    c_int,
    i64,
    c_int,
    c_int,
    c_int,
) -> Status;

struct Api {
    create: unsafe extern "C" fn(*mut Handle) -> Status,
    set_stream: unsafe extern "C" fn(Handle, *mut c_void) -> Status,
    gemm: GemmStridedBatchedEx,
    _lib: libs::Loaded,
}

// SAFETY: the API holds only function pointers and the library that keeps them valid.
unsafe impl Send for Api {}
unsafe impl Sync for Api {}

fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(|| {
        let loaded = libs::load(Lib::Cublas)?;
        // SAFETY: cuBLAS v2 C API symbols with the signatures in `Api` (cublas_api.h, CUDA 11-13).
        unsafe {
            macro_rules! sym {
                ($name:literal) => {
                    *loaded.lib.get($name).map_err(|e| format!("{}: {e}", loaded.path.display()))?
                };
            }
            Ok(Api {
                create: sym!(b"cublasCreate_v2\0"),
                set_stream: sym!(b"cublasSetStream_v2\0"),
                gemm: sym!(b"cublasGemmStridedBatchedEx\0"),
                _lib: loaded,
            })
        }
    })
    .as_ref()
    .map_err(|e| e.clone())
}

/// A cuBLAS handle bound to one device's stream. Created once per device and kept for the
/// life of the process (the device registry never drops devices).
pub struct Blas {
    handle: Handle,
}

// SAFETY: cuBLAS handles may be used from any thread as long as calls are not concurrent;
// every call goes through the device, which orders work on its single stream.
unsafe impl Send for Blas {}
unsafe impl Sync for Blas {}

/// One row-major batched GEMM: `C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b]`, with
/// op(A) of shape [m, k] and op(B) of shape [k, n]; batch strides in elements (0 broadcasts).
#[derive(Debug, Clone, Copy)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    /// A is stored [k, m] (A transposed) instead of [m, k].
    pub trans_a: bool,
    /// B is stored [n, k] instead of [k, n].
    pub trans_b: bool,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    pub alpha: f32,
    pub beta: f32,
}

fn cuda_type(dtype: DType) -> Result<c_int, String> {
    match dtype {
        DType::F32 => Ok(CUDA_R_32F),
        DType::F16 => Ok(CUDA_R_16F),
        DType::BF16 => Ok(CUDA_R_16BF),
        other => Err(format!("cuBLAS GEMM takes f32, f16 or bf16, not {other}")),
    }
}

impl Blas {
    pub(crate) fn new(stream: *mut c_void) -> Result<Blas, String> {
        let api = api()?;
        let mut handle: Handle = std::ptr::null_mut();
        // SAFETY: `handle` is valid for writes; the device's context is current (the caller binds it).
        let s = unsafe { (api.create)(&mut handle) };
        if s != 0 {
            return Err(format!("cublasCreate failed with status {s}"));
        }
        // SAFETY: a live handle and the device's live stream.
        let s = unsafe { (api.set_stream)(handle, stream) };
        if s != 0 {
            return Err(format!("cublasSetStream failed with status {s}"));
        }
        Ok(Blas { handle })
    }

    /// Runs `g` on device pointers `a`, `b`, `c`, all of `dtype`.
    ///
    /// # Safety
    /// The pointers must address device memory of the device this handle belongs to, holding
    /// the elements `g` describes, and `c` must not alias `a` or `b`.
    pub unsafe fn gemm(&self, dtype: DType, g: &Gemm, a: u64, b: u64, c: u64) -> crate::Result<()> {
        let api = api().map_err(crate::Error::Cuda)?;
        let t = cuda_type(dtype).map_err(crate::Error::Cuda)?;
        let too_big = |v: usize| v > i32::MAX as usize;
        if too_big(g.m) || too_big(g.n) || too_big(g.k) || too_big(g.batch) {
            return Err(crate::Error::Cuda(format!("GEMM dims {g:?} exceed cuBLAS's 32-bit sizes")));
        }
        // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ: swap the operands and m/n.
        let (op_b, ldb) = if g.trans_b { (CUBLAS_OP_T, g.k) } else { (CUBLAS_OP_N, g.n) };
        let (op_a, lda) = if g.trans_a { (CUBLAS_OP_T, g.m) } else { (CUBLAS_OP_N, g.k) };
        let s = (api.gemm)(
            self.handle,
            op_b,
            op_a,
            g.n as c_int,
            g.m as c_int,
            g.k as c_int,
            &g.alpha as *const f32 as *const c_void,
            b as *const c_void,
            t,
            ldb as c_int,
            g.stride_b as i64,
            a as *const c_void,
            t,
            lda as c_int,
            g.stride_a as i64,
            &g.beta as *const f32 as *const c_void,
            c as *mut c_void,
            t,
            g.n as c_int,
            g.stride_c as i64,
            g.batch as c_int,
            CUBLAS_COMPUTE_32F,
            CUBLAS_GEMM_DEFAULT,
        );
        if s != 0 {
            return Err(crate::Error::Cuda(format!("cublasGemmStridedBatchedEx failed with status {s} for {g:?} {dtype}")));
        }
        Ok(())
    }
}

/// Where cuBLAS was found, or why not (for `revelio info`).
pub fn location() -> Result<String, String> {
    libs::load(Lib::Cublas).map(|l| l.path.display().to_string())
}
