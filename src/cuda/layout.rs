//! Launchers for kernels/layout.cu: permute (tiled transpose when the permute is a batched 2D
//! transpose, the generic strided gather otherwise), cat and narrow as strided row copies (a
//! plain device copy when contiguous), nearest upsampling (2x and to any size), row gathers.

use super::elementwise::empty;
use super::kernels::{Kernel, Module, FLOATS};
use super::launch::{cfg_1d, to_i32, Dims, LaunchConfig, PushKernelArg};
use super::CudaDevice;
use crate::plan::layout::{batched_transpose, CatPlan, NarrowPlan};
use crate::tensor::{DType, Tensor};
use crate::Result;
use std::sync::Arc;

const M: Module = Module::Layout;

/// Every dtype: these kernels only move elements.
const ALL: &[DType] = &[DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32];

pub const PERMUTE: Kernel = Kernel::new(M, "permute", ALL);
pub const COPY_ROWS: Kernel = Kernel::new(M, "copy_rows", ALL);
pub const TRANSPOSE: Kernel = Kernel::new(M, "transpose", ALL);
pub const UPSAMPLE_NEAREST2X: Kernel = Kernel::new(M, "upsample_nearest2x", FLOATS);
pub const UPSAMPLE_NEAREST: Kernel = Kernel::new(M, "upsample_nearest", FLOATS);
pub const GATHER_ROWS: Kernel = Kernel::new(M, "gather_rows", ALL);

pub const KERNELS: &[Kernel] = &[PERMUTE, COPY_ROWS, TRANSPOSE, UPSAMPLE_NEAREST2X, UPSAMPLE_NEAREST, GATHER_ROWS];

/// Most blocks a grid may have in y and z.
const MAX_GRID_YZ: usize = 65_535;

pub fn permute(dev: &Arc<CudaDevice>, x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let dims: Vec<usize> = perm.iter().map(|&p| x.dims()[p]).collect();
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return x.deep_clone();
    }
    if let Some((batch, rows, cols)) = batched_transpose(x.dims(), perm) {
        return transpose(dev, x, batch, rows, cols)?.reshape(dims);
    }
    permute_generic(dev, x, perm)
}

/// One thread per output element reading x through permuted strides.
fn permute_generic(dev: &Arc<CudaDevice>, x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let _r = super::nvtx::range("permute");
    let dims: Vec<usize> = perm.iter().map(|&p| x.dims()[p]).collect();
    let mut y = empty(dev, dims.clone(), x.dtype())?;
    let n = x.numel() as i64;
    if n == 0 {
        return Ok(y);
    }
    let in_strides = x.shape().strides();
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let shape = Dims::new(&dims, &vec![0; dims.len()])?;
    let strides = Dims::new(&dims, &strides)?;
    let f = dev.function(&PERMUTE, x.dtype())?;
    let (xp, yp) = (x.cuda_ptr()?, y.cuda_ptr_mut()?);
    // SAFETY: x and y hold n elements of one dtype; y's multi-index under x's permuted strides
    // addresses an element of x (a permutation of x's own dims and strides).
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&xp)
            .arg(&yp)
            .arg(&n)
            .arg(&shape)
            .arg(&strides)
            .launch(cfg_1d(n as usize, 256))
    }?;
    Ok(y)
}

/// x seen as [batch, rows, cols] -> [batch, cols, rows] through 32x32 shared-memory tiles
/// (the generic permute when the grid would exceed its y/z limits).
pub fn transpose(dev: &Arc<CudaDevice>, x: &Tensor, batch: usize, rows: usize, cols: usize) -> Result<Tensor> {
    let (gx, gy) = (cols.div_ceil(32), rows.div_ceil(32));
    if gy > MAX_GRID_YZ || batch > MAX_GRID_YZ || to_i32(rows * cols, "transpose plane").is_err() {
        return permute_generic(dev, &x.reshape([batch, rows, cols])?, &[0, 2, 1]);
    }
    let _r = super::nvtx::range("transpose");
    let mut y = empty(dev, [batch, cols, rows], x.dtype())?;
    if batch * rows * cols == 0 {
        return Ok(y);
    }
    let f = dev.function(&TRANSPOSE, x.dtype())?;
    let (xp, yp) = (x.cuda_ptr()?, y.cuda_ptr_mut()?);
    let (r32, c32) = (rows as i32, cols as i32);
    let cfg = LaunchConfig { grid_dim: (gx as u32, gy as u32, batch as u32), block_dim: (32, 8, 1), shared_mem_bytes: 0 };
    // SAFETY: x and y hold batch*rows*cols elements of one dtype (rows*cols < 2^31); the
    // kernel guards the tile edges; block 32x8 as the kernel assumes.
    unsafe { dev.stream().launch_builder(&f).arg(&xp).arg(&yp).arg(&r32).arg(&c32).launch(cfg) }?;
    Ok(y)
}

/// A strided copy of `rows` rows of `cols` elements.
struct RowCopy {
    src: u64,
    dst: u64,
    rows: usize,
    cols: usize,
    src_stride: usize,
    dst_stride: usize,
}

fn copy_rows(dev: &Arc<CudaDevice>, dtype: DType, c: RowCopy) -> Result<()> {
    let n = c.rows * c.cols;
    if n == 0 {
        return Ok(());
    }
    if c.rows == 1 || (c.src_stride == c.cols && c.dst_stride == c.cols) {
        return dev.copy_dtod(c.src, c.dst, n * dtype.size_in_bytes());
    }
    let f = dev.function(&COPY_ROWS, dtype)?;
    let (rows, cols, ss, ds) = (c.rows as i64, c.cols as i64, c.src_stride as i64, c.dst_stride as i64);
    // SAFETY: the caller's src holds rows of src_stride >= cols elements and dst rows of
    // dst_stride >= cols, both of `dtype` (checked in ops); the kernel guards i < rows*cols.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&c.src)
            .arg(&c.dst)
            .arg(&rows)
            .arg(&cols)
            .arg(&ss)
            .arg(&ds)
            .launch(cfg_1d(n, 256))
    }?;
    Ok(())
}

pub fn cat(dev: &Arc<CudaDevice>, xs: &[&Tensor], plan: &CatPlan) -> Result<Tensor> {
    let _r = super::nvtx::range("cat");
    let dtype = xs[0].dtype();
    let size = dtype.size_in_bytes();
    let mut y = empty(dev, plan.out.clone(), dtype)?;
    let yp = y.cuda_ptr_mut()?;
    let total: usize = plan.sizes.iter().sum();
    let mut offset = 0;
    for (x, &s) in xs.iter().zip(&plan.sizes) {
        let cols = s * plan.inner;
        let copy = RowCopy {
            src: x.cuda_ptr()?,
            dst: yp + (offset * plan.inner * size) as u64,
            rows: plan.outer,
            cols,
            src_stride: cols,
            dst_stride: total * plan.inner,
        };
        copy_rows(dev, dtype, copy)?;
        offset += s;
    }
    Ok(y)
}

pub fn narrow(dev: &Arc<CudaDevice>, x: &Tensor, p: &NarrowPlan) -> Result<Tensor> {
    let _r = super::nvtx::range("narrow");
    let size = x.dtype().size_in_bytes();
    let mut y = empty(dev, p.out.clone(), x.dtype())?;
    let cols = p.len * p.inner;
    let copy = RowCopy {
        src: x.cuda_ptr()? + (p.start * p.inner * size) as u64,
        dst: y.cuda_ptr_mut()?,
        rows: p.outer,
        cols,
        src_stride: p.size * p.inner,
        dst_stride: cols,
    };
    copy_rows(dev, x.dtype(), copy)?;
    Ok(y)
}

pub fn upsample_nearest2x(dev: &Arc<CudaDevice>, x: &Tensor, (n, c, h, w): (usize, usize, usize, usize)) -> Result<Tensor> {
    let _r = super::nvtx::range("upsample_nearest2x");
    let mut y = empty(dev, [n, c, 2 * h, 2 * w], x.dtype())?;
    let n_out = y.numel();
    if n_out == 0 {
        return Ok(y);
    }
    to_i32(2 * h.max(w), "upsample output height or width")?;
    let (h32, w32) = (h as i32, w as i32);
    let f = dev.function(&UPSAMPLE_NEAREST2X, x.dtype())?;
    let (xp, yp, n64) = (x.cuda_ptr()?, y.cuda_ptr_mut()?, n_out as i64);
    // SAFETY: x holds n*c*h*w elements and y n*c*2h*2w, of one dtype; guarded by n_out.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&xp)
            .arg(&yp)
            .arg(&n64)
            .arg(&h32)
            .arg(&w32)
            .launch(cfg_1d(n_out, 256))
    }?;
    Ok(y)
}

/// x: [N, C, H, W] -> [N, C, OH, OW] with torch's nearest source indices; the f32 scales
/// H / OH and W / OW are computed here, as aten computes them, and passed to the kernel.
pub fn upsample_nearest(
    dev: &Arc<CudaDevice>,
    x: &Tensor,
    (n, c, h, w): (usize, usize, usize, usize),
    (oh, ow): (usize, usize),
) -> Result<Tensor> {
    let _r = super::nvtx::range("upsample_nearest");
    let mut y = empty(dev, [n, c, oh, ow], x.dtype())?;
    let n_out = y.numel();
    if n_out == 0 {
        return Ok(y);
    }
    let (h32, w32) = (to_i32(h, "upsample input height")?, to_i32(w, "upsample input width")?);
    let (oh32, ow32) = (to_i32(oh, "upsample output height")?, to_i32(ow, "upsample output width")?);
    let (sh, sw) = (h as f32 / oh as f32, w as f32 / ow as f32);
    let f = dev.function(&UPSAMPLE_NEAREST, x.dtype())?;
    let (xp, yp, n64) = (x.cuda_ptr()?, y.cuda_ptr_mut()?, n_out as i64);
    // SAFETY: x holds n*c*h*w elements and y n*c*oh*ow, of one dtype; guarded by n_out; the
    // kernel clamps each source index to h - 1 / w - 1.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&xp)
            .arg(&yp)
            .arg(&n64)
            .arg(&h32)
            .arg(&w32)
            .arg(&oh32)
            .arg(&ow32)
            .arg(&sh)
            .arg(&sw)
            .launch(cfg_1d(n_out, 256))
    }?;
    Ok(y)
}

/// x: [R, ..], idx: i64 [..] on the device (each in 0..R, checked in ops) -> `out`.
pub fn gather_rows(dev: &Arc<CudaDevice>, x: &Tensor, idx: &Tensor, out: Vec<usize>) -> Result<Tensor> {
    let _r = super::nvtx::range("gather_rows");
    let mut y = empty(dev, out, x.dtype())?;
    let n_out = y.numel();
    if n_out == 0 {
        return Ok(y);
    }
    let row_len = (x.numel() / x.dims()[0]) as i64;
    let f = dev.function(&GATHER_ROWS, x.dtype())?;
    let (xp, ip, yp, n64) = (x.cuda_ptr()?, idx.cuda_ptr()?, y.cuda_ptr_mut()?, n_out as i64);
    // SAFETY: idx holds n_out / row_len i64 values in 0..R (checked on the host); x holds
    // R*row_len elements and y n_out, of one dtype.
    unsafe {
        dev.stream()
            .launch_builder(&f)
            .arg(&xp)
            .arg(&ip)
            .arg(&yp)
            .arg(&n64)
            .arg(&row_len)
            .launch(cfg_1d(n_out, 256))
    }?;
    Ok(y)
}
