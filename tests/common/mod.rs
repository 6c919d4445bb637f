//! Shared test helpers: seeded random tensors, one tolerance model (relative L2 over the whole
//! tensor decides; the report names the worst element and the first mismatches), central
//! finite differences in f64, and the CUDA-vs-CPU comparison every GPU test uses.
#![allow(dead_code)]

use revelio::{DType, Device, Tensor};

/// Relative-L2 tolerances by precision: f32 kernels must agree with the CPU to 1e-5; 16-bit
/// storage with f32 accumulation to 1e-2 (against a reference fed the same rounded inputs).
pub fn tol_for(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-5,
        _ => 1e-2,
    }
}

/// Standard-normal CPU f32 tensor from the counter-based generator.
pub fn randn(dims: &[usize], seed: u64) -> Tensor {
    Tensor::randn(dims.to_vec(), seed, &Device::Cpu).unwrap()
}

/// Uniform CPU f32 tensor in [lo, hi).
pub fn uniform(dims: &[usize], lo: f32, hi: f32, seed: u64) -> Tensor {
    Tensor::rand_uniform(dims.to_vec(), lo, hi, seed, &Device::Cpu).unwrap()
}

pub fn cpu(v: Vec<f32>, dims: &[usize]) -> Tensor {
    Tensor::from_vec(v, dims.to_vec(), &Device::Cpu).unwrap()
}

/// ||a - b|| / ||b||, in f64 (NaN if either holds a NaN).
pub fn rel_l2(actual: &[f32], expected: &[f32]) -> f64 {
    assert_eq!(actual.len(), expected.len(), "length mismatch");
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&a, &e) in actual.iter().zip(expected) {
        if !a.is_finite() || !e.is_finite() {
            return f64::NAN;
        }
        num += (a as f64 - e as f64).powi(2);
        den += (e as f64).powi(2);
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// With `REVELIO_TEST_ERRORS` set to a file, every comparison appends `thread, what, error,
/// tolerance` to it (tab-separated), so the errors reached can be tabulated (docs/kernels.md).
fn record_error(what: &str, err: f64, tol: f64) {
    use std::io::Write;
    if let Some(path) = std::env::var_os("REVELIO_TEST_ERRORS") {
        let thread = std::thread::current().name().unwrap_or("?").to_string();
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{thread}\t{what}\t{err:.3e}\t{tol:.0e}");
        }
    }
}

/// Asserts relative L2 <= tol. On failure prints the error, the largest |diff| and where, and
/// the first 10 elements outside atol + rtol * |expected| (atol = rtol = tol * 10).
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], tol: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: {} elements, expected {}", actual.len(), expected.len());
    let err = rel_l2(actual, expected);
    record_error(what, err, tol);
    if err <= tol {
        return;
    }
    let mut worst = (0usize, 0.0f64);
    let mut report = Vec::new();
    let band = tol * 10.0;
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let d = (a as f64 - e as f64).abs();
        if !d.is_finite() || d > worst.1 {
            worst = (i, if d.is_finite() { d } else { f64::INFINITY });
        }
        if (!d.is_finite() || d > band + band * (e as f64).abs()) && report.len() < 10 {
            report.push(format!("  [{i}] got {a}, expected {e}"));
        }
    }
    panic!(
        "{what}: relative L2 error {err:.3e} > {tol:.0e}; max |diff| {:.3e} at [{}] (got {}, expected {})\n{}",
        worst.1,
        worst.0,
        actual[worst.0],
        expected[worst.0],
        report.join("\n")
    );
}

/// `assert_close` on two tensors of the same shape (any dtype, any device).
pub fn assert_tensor_close(what: &str, actual: &Tensor, expected: &Tensor, tol: f64) {
    assert_eq!(actual.dims(), expected.dims(), "{what}: shape {} expected {}", actual.shape(), expected.shape());
    assert_close(what, &actual.to_f32_vec().unwrap(), &expected.to_f32_vec().unwrap(), tol);
}

/// dL/dx by central differences of `f` in f64 (eps 1e-6 gives ~1e-9 relative accuracy for
/// smooth f of moderate size).
pub fn fd_grad(f: &dyn Fn(&[f64]) -> f64, x: &[f64], eps: f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = xp[i];
            xp[i] = orig + eps;
            let fp = f(&xp);
            xp[i] = orig - eps;
            let fm = f(&xp);
            xp[i] = orig;
            (fp - fm) / (2.0 * eps)
        })
        .collect()
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn f64_to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Whether the GPU tests run at their small size. On a GPU they run the real SD shapes; on the
/// simulated device (`REVELIO_SIM`), where every kernel runs as host code on the CPU, each test
/// swaps its largest shapes for smaller ones that take the same kernel paths (tile remainders,
/// two-phase reductions, split grids). `REVELIO_TEST_SIZE=full` or `small` overrides.
pub fn small() -> bool {
    match std::env::var("REVELIO_TEST_SIZE").as_deref() {
        Ok("full") => false,
        Ok("small") => true,
        _ => revelio::cuda::sim::selected_dir().is_some(),
    }
}

/// `full` at the full test size, `small` at the small one (see `small`).
pub fn sized<T>(full: T, small_: T) -> T {
    if small() {
        small_
    } else {
        full
    }
}

/// The first CUDA GPU, with output poisoning on (new buffers are NaN), or a panic that says
/// these tests need one.
pub fn cuda() -> Device {
    let dev = Device::cuda(0).unwrap_or_else(|e| panic!("these tests need a CUDA GPU: {e}"));
    if let Device::Cuda(d) = &dev {
        d.set_poison(true);
    }
    dev
}

/// A CPU f32 tensor whose values are representable in `dtype` (rounded through it).
pub fn round_through(t: &Tensor, dtype: DType) -> Tensor {
    if !t.dtype().is_float() || dtype == DType::F32 {
        return t.clone();
    }
    revelio::ops::to_dtype(&revelio::ops::to_dtype(t, dtype).unwrap(), DType::F32).unwrap()
}

/// Runs `f` on the CPU (f32, inputs rounded through `dtype`) and on CUDA (float inputs stored
/// as `dtype`), and asserts every output agrees within `tol_for(dtype)` (or `tol` if given).
/// Int inputs (labels, ids) pass through unchanged.
pub fn check_cuda_vs_cpu(
    what: &str,
    dtype: DType,
    inputs: &[Tensor],
    tol: Option<f64>,
    f: impl Fn(&[Tensor]) -> revelio::Result<Vec<Tensor>>,
) {
    let dev = cuda();
    let rounded: Vec<Tensor> = inputs.iter().map(|t| round_through(t, dtype)).collect();
    let expected = f(&rounded).unwrap_or_else(|e| panic!("{what}: CPU reference failed: {e}"));
    let on_gpu: Vec<Tensor> = rounded
        .iter()
        .map(|t| {
            let t = if t.dtype().is_float() { revelio::ops::to_dtype(t, dtype).unwrap() } else { t.clone() };
            t.to_device(&dev).unwrap()
        })
        .collect();
    let actual = f(&on_gpu).unwrap_or_else(|e| panic!("{what} ({dtype}): CUDA op failed: {e}"));
    assert_eq!(actual.len(), expected.len(), "{what}: output count");
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert!(a.device().is_cuda(), "{what}: output {i} is not on the GPU");
        assert_tensor_close(&format!("{what} ({dtype}) output {i}"), a, e, tol.unwrap_or_else(|| tol_for(dtype)));
    }
}

/// The fixture format the tools/reference scripts write (tools/reference/common.py `FORMAT`).
pub const FIXTURE_FORMAT: &str = "revelio-fixture-1";

/// Opens tests/fixtures/<relpath>, checking it was made by a current tools/reference script;
/// a missing or stale fixture panics with the command that remakes it.
pub fn fixture(relpath: &str) -> revelio::io::SafeTensorsFile {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(relpath);
    let f = revelio::io::SafeTensorsFile::open(&path).unwrap_or_else(|e| {
        panic!("{e}\nhint: make the fixtures with the script in tools/reference/ (see tools/reference/README.md)")
    });
    let meta = f.metadata();
    let script = meta.get("script").cloned().unwrap_or_else(|| "tools/reference/<script>".into());
    assert_eq!(
        meta.get("format").map(String::as_str),
        Some(FIXTURE_FORMAT),
        "{relpath} is stale (format {:?}); re-run {script}",
        meta.get("format")
    );
    f
}

/// Tensor `key` of a fixture as f32 on the CPU.
pub fn fixture_tensor(f: &revelio::io::SafeTensorsFile, key: &str) -> Tensor {
    f.load(key, DType::F32, &Device::Cpu).unwrap_or_else(|e| panic!("{e}"))
}

/// Every tensor of a safetensors file as bits (f32) or values (i64), by name: for checks that
/// two runs wrote the same files bit for bit.
pub fn file_bits(path: &std::path::Path) -> std::collections::HashMap<String, Vec<u64>> {
    let all = revelio::io::SafeTensorsFile::open(path).unwrap().load_all(&Device::Cpu).unwrap();
    all.into_iter()
        .map(|(k, t)| {
            let v = match t.dtype() {
                DType::I64 => t.to_vec::<i64>().unwrap().iter().map(|&v| v as u64).collect(),
                _ => t.to_f32_vec().unwrap().iter().map(|v| v.to_bits() as u64).collect(),
            };
            (k, v)
        })
        .collect()
}
