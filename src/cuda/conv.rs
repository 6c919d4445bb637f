//! Launchers for kernels/conv.cu: conv2d forward and backward as implicit GEMMs (tensor cores
//! for f16/bf16, SIMT for f32), plus the small helpers the backward needs (weight transpose,
//! the deterministic sum of the weight-grad partials, the bias grad). Grid shapes, tile counts
//! and the weight-grad split are decided here.

use super::elementwise::empty;
use super::kernels::{Kernel, Module, F32_ONLY, FLOATS, HALVES};
use super::launch::{cfg_1d, cfg_blocks, to_i32, DeviceRepr, LaunchConfig, PushKernelArg};
use super::CudaDevice;
use crate::plan::conv::{Conv2dGeom, Conv2dGrads};
use crate::tensor::{DType, Device, Tensor};
use crate::{Error, Result};
use std::sync::Arc;

const M: Module = Module::Conv;

pub const FWD_TC: Kernel = Kernel::new(M, "conv2d_fwd_tc", HALVES);
pub const DGRAD_TC: Kernel = Kernel::new(M, "conv2d_dgrad_tc", HALVES);
pub const WGRAD_TC: Kernel = Kernel::new(M, "conv2d_wgrad_tc", HALVES);
pub const FWD_SIMT: Kernel = Kernel::new(M, "conv2d_fwd_simt", F32_ONLY);
pub const DGRAD_SIMT: Kernel = Kernel::new(M, "conv2d_dgrad_simt", F32_ONLY);
pub const WGRAD_SIMT: Kernel = Kernel::new(M, "conv2d_wgrad_simt", F32_ONLY);
pub const WEIGHT_T: Kernel = Kernel::new(M, "conv2d_weight_t", FLOATS);
pub const WGRAD_SUM: Kernel = Kernel::new(M, "conv2d_wgrad_sum", FLOATS);
pub const BGRAD: Kernel = Kernel::new(M, "conv2d_bgrad", FLOATS);

pub const KERNELS: &[Kernel] = &[FWD_TC, DGRAD_TC, WGRAD_TC, FWD_SIMT, DGRAD_SIMT, WGRAD_SIMT, WEIGHT_T, WGRAD_SUM, BGRAD];

/// Threads per block of every GEMM kernel.
const THREADS: u32 = 256;

/// Block tile (M, N, K) of the tensor-core kernels and of the SIMT f32 kernels.
const TC_TILE: (usize, usize, usize) = (128, 128, 32);
const SIMT_TILE: (usize, usize, usize) = (64, 64, 16);

/// The sizes of one convolution as the kernels take them. Mirrors `struct ConvShape` in
/// kernels/conv.cu.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    pub n: i32,
    pub cin: i32,
    pub h: i32,
    pub w: i32,
    pub cout: i32,
    pub kh: i32,
    pub kw: i32,
    pub oh: i32,
    pub ow: i32,
    pub sh: i32,
    pub sw: i32,
    pub pt: i32,
    pub pl: i32,
}

// SAFETY: a plain `repr(C)` struct of i32s, laid out as the C struct in conv.cu.
unsafe impl DeviceRepr for ConvShape {}

impl ConvShape {
    /// The kernels index one image, one GEMM dimension and one weight with 32-bit ints (whole
    /// tensors with 64-bit offsets): check that every such size fits.
    fn new(g: &Conv2dGeom) -> Result<ConvShape> {
        to_i32(g.cin * g.h * g.w, "conv2d: elements of one input image (Cin*H*W)")?;
        to_i32(g.cout * g.oh * g.ow, "conv2d: elements of one output image (Cout*OH*OW)")?;
        to_i32(g.n * g.h * g.w, "conv2d: input pixels (N*H*W)")?;
        to_i32(g.n * g.oh * g.ow, "conv2d: output pixels (N*OH*OW)")?;
        to_i32(g.cout * g.k(), "conv2d: weight elements")?;
        Ok(ConvShape {
            n: to_i32(g.n, "conv2d: batch")?,
            cin: to_i32(g.cin, "conv2d: Cin")?,
            h: to_i32(g.h, "conv2d: H")?,
            w: to_i32(g.w, "conv2d: W")?,
            cout: to_i32(g.cout, "conv2d: Cout")?,
            kh: to_i32(g.kh, "conv2d: kh")?,
            kw: to_i32(g.kw, "conv2d: kw")?,
            oh: to_i32(g.oh, "conv2d: OH")?,
            ow: to_i32(g.ow, "conv2d: OW")?,
            sh: to_i32(g.stride.0, "conv2d: stride")?,
            sw: to_i32(g.stride.1, "conv2d: stride")?,
            pt: to_i32(g.padding[0], "conv2d: padding")?,
            pl: to_i32(g.padding[2], "conv2d: padding")?,
        })
    }
}

/// Tiles of an (m x n) GEMM output, as one 1D grid (the kernels decode the M tile fastest).
fn tiles(m: usize, n: usize, tile: (usize, usize, usize)) -> usize {
    m.div_ceil(tile.0) * n.div_ceil(tile.1)
}

/// Whether the kernels may read a row-major A operand with `cols` columns at `ptr` in 16-byte
/// pieces (8 halves): rows start 16-byte aligned.
fn rows_vectorizable(ptr: u64, cols: usize) -> i32 {
    i32::from(cols.is_multiple_of(8) && ptr.is_multiple_of(16))
}

/// x: [N, Cin, H, W], weight: [Cout, Cin, kh, kw], bias: [Cout] -> [N, Cout, OH, OW].
pub fn conv2d(dev: &Arc<CudaDevice>, x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, g: &Conv2dGeom) -> Result<Tensor> {
    let _r = super::nvtx::range("conv2d");
    let dtype = x.dtype();
    let mut y = empty(dev, g.out_dims().to_vec(), dtype)?;
    if g.n == 0 {
        return Ok(y);
    }
    let s = ConvShape::new(g)?;
    let (xp, wp, yp) = (x.cuda_ptr()?, weight.cuda_ptr()?, y.cuda_ptr_mut()?);
    let bp = match bias {
        Some(b) => b.cuda_ptr()?,
        None => 0u64,
    };
    let pixels = g.n * g.oh * g.ow;
    let stream = dev.stream();
    // SAFETY (both launches): x holds N*Cin*H*W, weight Cout*K, bias (when not null) Cout and
    // y N*Cout*OH*OW elements of `dtype`, as `s` describes (checked in ops); y is fresh; every
    // per-image size fits the kernels' 32-bit indexing (ConvShape::new). The f16/bf16 kernel
    // reads the weight in 16-byte pieces only when a_vec says rows are 16-byte aligned.
    if dtype == DType::F32 {
        let f = dev.function(&FWD_SIMT, dtype)?;
        let cfg = cfg_blocks(tiles(g.cout, pixels, SIMT_TILE), THREADS, 0)?;
        unsafe { stream.launch_builder(&f).arg(&xp).arg(&wp).arg(&bp).arg(&yp).arg(&s).launch(cfg) }?;
    } else {
        let f = dev.function(&FWD_TC, dtype)?;
        let a_vec = rows_vectorizable(wp, g.k());
        let cfg = cfg_blocks(tiles(g.cout, pixels, TC_TILE), THREADS, 0)?;
        unsafe { stream.launch_builder(&f).arg(&xp).arg(&wp).arg(&bp).arg(&yp).arg(&s).arg(&a_vec).launch(cfg) }?;
    }
    Ok(y)
}

/// dy: [N, Cout, OH, OW], x: [N, Cin, H, W], weight: [Cout, Cin, kh, kw] -> dx, dW, db.
pub fn conv2d_backward(
    dev: &Arc<CudaDevice>,
    dy: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    g: &Conv2dGeom,
    need_dx: bool,
    has_bias: bool,
) -> Result<Conv2dGrads> {
    let _r = super::nvtx::range("conv2d_backward");
    let dtype = x.dtype();
    let device = Device::Cuda(dev.clone());
    if g.n == 0 {
        let zeros = |dims: Vec<usize>| Tensor::zeros(dims, dtype, &device);
        return Ok(Conv2dGrads {
            dx: if need_dx { Some(zeros(vec![0, g.cin, g.h, g.w])?) } else { None },
            dweight: zeros(weight.dims().to_vec())?,
            dbias: if has_bias { Some(zeros(vec![g.cout])?) } else { None },
        });
    }
    let s = ConvShape::new(g)?;
    let dx = if need_dx { Some(data_grad(dev, dy, weight, g, &s)?) } else { None };
    let dweight = weight_grad(dev, dy, x, g, &s)?;
    let dbias = if has_bias { Some(bias_grad(dev, dy, g)?) } else { None };
    Ok(Conv2dGrads { dx, dweight, dbias })
}

/// dx [N, Cin, H, W]: the transposed convolution of dy, an implicit GEMM over the weight
/// transposed to [Cin, Cout*kh*kw].
fn data_grad(dev: &Arc<CudaDevice>, dy: &Tensor, weight: &Tensor, g: &Conv2dGeom, s: &ConvShape) -> Result<Tensor> {
    let _r = super::nvtx::range("conv2d_dgrad");
    let dtype = dy.dtype();
    let khw = g.kh * g.kw;
    let mut wt = empty(dev, [g.cin, g.cout, g.kh, g.kw], dtype)?;
    let mut dx = empty(dev, [g.n, g.cin, g.h, g.w], dtype)?;
    let (wp, wtp) = (weight.cuda_ptr()?, wt.cuda_ptr_mut()?);
    let (cout, cin, khw_i) = (s.cout, s.cin, to_i32(khw, "conv2d: kh*kw")?);
    let stream = dev.stream();
    let f = dev.function(&WEIGHT_T, dtype)?;
    // SAFETY: weight and wt both hold Cout*Cin*kh*kw elements of `dtype`; wt is fresh.
    unsafe { stream.launch_builder(&f).arg(&wp).arg(&wtp).arg(&cout).arg(&cin).arg(&khw_i).launch(cfg_1d(weight.numel(), 256)) }?;

    let (dyp, dxp) = (dy.cuda_ptr()?, dx.cuda_ptr_mut()?);
    let pixels = g.n * g.h * g.w;
    // SAFETY (both launches): dy holds N*Cout*OH*OW, wt Cin*Cout*kh*kw and dx N*Cin*H*W
    // elements of `dtype`, as `s` describes; dx is fresh; sizes fit 32-bit indexing
    // (ConvShape::new). The f16/bf16 kernel reads wt rows in 16-byte pieces only when a_vec.
    if dtype == DType::F32 {
        let f = dev.function(&DGRAD_SIMT, dtype)?;
        let cfg = cfg_blocks(tiles(g.cin, pixels, SIMT_TILE), THREADS, 0)?;
        unsafe { stream.launch_builder(&f).arg(&dyp).arg(&wtp).arg(&dxp).arg(s).launch(cfg) }?;
    } else {
        let f = dev.function(&DGRAD_TC, dtype)?;
        let a_vec = rows_vectorizable(wtp, g.cout * khw);
        let cfg = cfg_blocks(tiles(g.cin, pixels, TC_TILE), THREADS, 0)?;
        unsafe { stream.launch_builder(&f).arg(&dyp).arg(&wtp).arg(&dxp).arg(s).arg(&a_vec).launch(cfg) }?;
    }
    Ok(dx)
}

/// How the weight-grad reduction over `stages` tiles of pixels is split across blocks:
/// enough blocks for about two per SM, at least 8 stages per split. Returns (splits,
/// stages per split); every split is non-empty.
fn wgrad_split(blocks: usize, stages: usize, sms: usize) -> (usize, usize) {
    let want = (2 * sms).div_ceil(blocks.max(1));
    let splits = want.clamp(1, (stages / 8).max(1)).min(65535);
    let per = stages.div_ceil(splits);
    (stages.div_ceil(per), per)
}

/// dW [Cout, Cin, kh, kw] = sum over pixels of dy x im2col(x): split-reduction GEMM into f32
/// partials, then their fixed-order sum.
fn weight_grad(dev: &Arc<CudaDevice>, dy: &Tensor, x: &Tensor, g: &Conv2dGeom, s: &ConvShape) -> Result<Tensor> {
    let _r = super::nvtx::range("conv2d_wgrad");
    let dtype = x.dtype();
    let (k, pixels, plane) = (g.k(), g.n * g.oh * g.ow, g.oh * g.ow);
    let tile = if dtype == DType::F32 { SIMT_TILE } else { TC_TILE };
    let blocks = tiles(g.cout, k, tile);
    let (splits, per) = wgrad_split(blocks, pixels.div_ceil(tile.2), dev.info().multiprocessors);
    let total = g.cout * k;
    let mut part = empty(dev, [splits * total], DType::F32)?;
    let mut dw = empty(dev, [g.cout, g.cin, g.kh, g.kw], dtype)?;
    let (dyp, xp, pp) = (dy.cuda_ptr()?, x.cuda_ptr()?, part.cuda_ptr_mut()?);
    let per_i = to_i32(per, "conv2d: stages per split")?;
    if blocks > i32::MAX as usize {
        return Err(Error::Cuda(format!("conv2d weight grad: {blocks} blocks exceed the grid")));
    }
    let cfg = LaunchConfig { grid_dim: (blocks as u32, splits as u32, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
    let stream = dev.stream();
    // SAFETY (both launches): dy holds N*Cout*OH*OW and x N*Cin*H*W elements of `dtype`, as
    // `s` describes; part holds splits*Cout*K f32, and split y covers stages [y*per, (y+1)*per)
    // of the ceil(N*OH*OW / tile) stages, never empty (wgrad_split). The f16/bf16 kernel reads
    // dy rows in 16-byte pieces only when a_vec (OH*OW % 8 == 0, 16-byte aligned).
    if dtype == DType::F32 {
        let f = dev.function(&WGRAD_SIMT, dtype)?;
        unsafe { stream.launch_builder(&f).arg(&dyp).arg(&xp).arg(&pp).arg(s).arg(&per_i).launch(cfg) }?;
    } else {
        let f = dev.function(&WGRAD_TC, dtype)?;
        let a_vec = rows_vectorizable(dyp, plane);
        unsafe { stream.launch_builder(&f).arg(&dyp).arg(&xp).arg(&pp).arg(s).arg(&per_i).arg(&a_vec).launch(cfg) }?;
    }
    let f = dev.function(&WGRAD_SUM, dtype)?;
    let (dwp, total_i, splits_i) = (dw.cuda_ptr_mut()?, total as i64, to_i32(splits, "conv2d: splits")?);
    // SAFETY: part holds splits*total f32 written above; dw is fresh with total elements of `dtype`.
    unsafe { stream.launch_builder(&f).arg(&pp).arg(&dwp).arg(&total_i).arg(&splits_i).launch(cfg_1d(total, 256)) }?;
    Ok(dw)
}

/// db [Cout] = the sum of dy over N, OH, OW.
fn bias_grad(dev: &Arc<CudaDevice>, dy: &Tensor, g: &Conv2dGeom) -> Result<Tensor> {
    let _r = super::nvtx::range("conv2d_bgrad");
    let dtype = dy.dtype();
    let mut db = empty(dev, [g.cout], dtype)?;
    let f = dev.function(&BGRAD, dtype)?;
    let (dyp, dbp) = (dy.cuda_ptr()?, db.cuda_ptr_mut()?);
    let (n, c, plane) = (to_i32(g.n, "conv2d: batch")?, to_i32(g.cout, "conv2d: Cout")?, to_i32(g.oh * g.ow, "conv2d: OH*OW")?);
    // SAFETY: dy holds N*Cout*OH*OW elements of `dtype`; db is fresh with Cout; one block of
    // 256 threads per channel (the kernel's block_sum needs a multiple of 32).
    unsafe { dev.stream().launch_builder(&f).arg(&dyp).arg(&dbp).arg(&n).arg(&c).arg(&plane).launch(cfg_blocks(g.cout, THREADS, 0)?) }?;
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wgrad_split_covers_every_stage_with_non_empty_splits() {
        for (blocks, stages, sms) in [(1, 1, 132), (1, 2048, 132), (720, 2048, 132), (3, 17, 108), (40, 9, 132)] {
            let (splits, per) = wgrad_split(blocks, stages, sms);
            assert!(splits >= 1 && per >= 1);
            assert!(splits * per >= stages, "{blocks} {stages}: {splits} x {per}");
            assert!((splits - 1) * per < stages, "{blocks} {stages}: last split empty");
        }
        assert_eq!(wgrad_split(720, 2048, 132), (1, 2048));
    }
}
