//! 2D convolution (NCHW, groups = 1, dilation = 1, any stride, asymmetric zero padding) and its
//! backward. Shapes are checked here and summed up in a `Conv2dGeom` that both backends trust:
//! the CPU runs im2col + GEMM (src/cpu/conv.rs), CUDA runs implicit-GEMM kernels
//! (kernels/conv.cu: tensor cores for f16/bf16, SIMT for f32).
//!
//! Legend: N = batch, Cin/Cout = channels, H, W = input size, kh, kw = kernel size,
//! OH, OW = output size, K = Cin * kh * kw (the GEMM reduction of the forward pass).
//! Accumulation rule of `conv2d_backward`: every gradient is returned fresh (`=`).

use super::{check_float, check_same_device, check_same_dtype};
use crate::tensor::{Device, Tensor};
use crate::{ensure_op, Result};
pub use crate::plan::conv::{Conv2dGeom, Conv2dGrads, Conv2dParams};

fn check_bias(op: &'static str, bias: &Tensor, g: &Conv2dGeom, weight: &Tensor) -> Result<()> {
    ensure_op!(bias.dims() == [g.cout], op, "bias {} must be [{}] for weight {}", bias.shape(), g.cout, weight.shape());
    Ok(())
}

/// The profile's name for a convolution: its kernel size, and the stride when it is not 1.
fn profile_name(g: &Conv2dGeom) -> &'static str {
    match (g.kh, g.kw, g.stride) {
        (1, 1, (1, 1)) => "conv2d 1x1",
        (3, 3, (1, 1)) => "conv2d 3x3",
        (3, 3, (2, 2)) => "conv2d 3x3 s2",
        _ => "conv2d",
    }
}

/// x: [N, Cin, H, W], weight: [Cout, Cin, kh, kw], bias: [Cout] -> [N, Cout, OH, OW] with
/// OH = (H + pad_top + pad_bottom - kh) / stride_h + 1 (likewise OW).
pub fn conv2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Result<Tensor> {
    const OP: &str = "conv2d";
    check_float(OP, x)?;
    let mut all = vec![x, weight];
    all.extend(bias);
    check_same_device(OP, &all)?;
    check_same_dtype(OP, &all)?;
    let g = Conv2dGeom::new(OP, x, weight, p)?;
    let _p = crate::profile::op(profile_name(&g));
    if let Some(b) = bias {
        check_bias(OP, b, &g, weight)?;
    }
    super::flops::add(2 * (g.n * g.cout * g.oh * g.ow * g.cin * g.kh * g.kw) as u64);
    match x.device() {
        Device::Cpu => crate::cpu::conv::conv2d(x, weight, bias, &g),
        Device::Cuda(d) => crate::cuda::conv::conv2d(&d, x, weight, bias, &g),
    }
}

/// dy: [N, Cout, OH, OW], x: [N, Cin, H, W] (the forward input), weight: [Cout, Cin, kh, kw]
/// -> dx [N, Cin, H, W] (when `need_dx`), dweight [Cout, Cin, kh, kw], dbias [Cout] (when
/// `has_bias`: the sum of dy over N, OH, OW).
pub fn conv2d_backward(dy: &Tensor, x: &Tensor, weight: &Tensor, p: &Conv2dParams, need_dx: bool, has_bias: bool) -> Result<Conv2dGrads> {
    let _p = crate::profile::op("conv2d_backward");
    const OP: &str = "conv2d_backward";
    check_float(OP, x)?;
    check_same_device(OP, &[dy, x, weight])?;
    check_same_dtype(OP, &[dy, x, weight])?;
    let g = Conv2dGeom::new(OP, x, weight, p)?;
    ensure_op!(
        dy.dims() == g.out_dims(),
        OP,
        "dy {} must be {:?} for x {} and weight {}",
        dy.shape(),
        g.out_dims(),
        x.shape(),
        weight.shape()
    );
    match x.device() {
        Device::Cpu => crate::cpu::conv::conv2d_backward(dy, x, weight, &g, need_dx, has_bias),
        Device::Cuda(d) => crate::cuda::conv::conv2d_backward(&d, dy, x, weight, &g, need_dx, has_bias),
    }
}
