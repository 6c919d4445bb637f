//! Elementwise ops: activations (forward and backward), GEGLU, broadcasting add/sub/mul/div,
//! affine, and dtype conversion (`to_dtype`). Shapes and dtypes are checked here; the backends
//! trust the checks.

use super::{check_float, check_same_device, check_same_dtype};
use crate::cuda;
use crate::tensor::{DType, Device, Tensor};
use crate::{ensure_op, Error, Result};
pub use crate::plan::elementwise::{BinaryOp, BroadcastPlan, Unary};

/// y = f(x), same shape and dtype.
pub fn unary(x: &Tensor, op: Unary) -> Result<Tensor> {
    let _p = crate::profile::op(op.name());
    check_float("unary", x)?;
    match x.device() {
        Device::Cpu => crate::cpu::elementwise::unary(x, op),
        Device::Cuda(d) => cuda::elementwise::unary(&d, x, op),
    }
}

pub fn relu(x: &Tensor) -> Result<Tensor> {
    unary(x, Unary::Relu)
}
pub fn silu(x: &Tensor) -> Result<Tensor> {
    unary(x, Unary::Silu)
}
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    unary(x, Unary::Gelu)
}
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    unary(x, Unary::GeluTanh)
}
pub fn quick_gelu(x: &Tensor) -> Result<Tensor> {
    unary(x, Unary::QuickGelu)
}

/// dx = dy * f'(x), for the activation `op` applied to `x` in the forward pass.
pub fn unary_backward(dy: &Tensor, x: &Tensor, op: Unary) -> Result<Tensor> {
    let _p = crate::profile::op("unary_backward");
    check_float("unary_backward", x)?;
    check_same_device("unary_backward", &[dy, x])?;
    check_same_dtype("unary_backward", &[dy, x])?;
    ensure_op!(dy.shape() == x.shape(), "unary_backward", "dy {} and x {} differ in shape", dy.shape(), x.shape());
    match x.device() {
        Device::Cpu => crate::cpu::elementwise::unary_backward(dy, x, op),
        Device::Cuda(d) => cuda::elementwise::unary_backward(&d, dy, x, op),
    }
}

/// GEGLU as diffusers' `GEGLU` after its projection: x [.., 2F] is split in half along the
/// last dim into (h, g) and the result is h * gelu(g), [.., F].
pub fn geglu(x: &Tensor) -> Result<Tensor> {
    let _p = crate::profile::op("geglu");
    check_float("geglu", x)?;
    let last = *x.dims().last().ok_or_else(|| Error::op("geglu", "rank-0 input"))?;
    ensure_op!(last % 2 == 0, "geglu", "last dim of {} must be even (hidden and gate halves)", x.shape());
    match x.device() {
        Device::Cpu => crate::cpu::elementwise::geglu(x),
        Device::Cuda(d) => cuda::elementwise::geglu(&d, x),
    }
}

/// a op b with numpy broadcasting; both operands of one float dtype on one device.
pub fn binary(a: &Tensor, b: &Tensor, op: BinaryOp) -> Result<Tensor> {
    let _p = crate::profile::op(op.name());
    let name = op.name();
    check_float(name, a)?;
    check_same_device(name, &[a, b])?;
    check_same_dtype(name, &[a, b])?;
    let plan = BroadcastPlan::new(name, a.shape(), b.shape())?;
    match a.device() {
        Device::Cpu => crate::cpu::elementwise::binary(a, b, op, &plan),
        Device::Cuda(d) => cuda::elementwise::binary(&d, a, b, op, &plan),
    }
}

pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, BinaryOp::Add)
}
pub fn sub(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, BinaryOp::Sub)
}
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, BinaryOp::Mul)
}
pub fn div(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, BinaryOp::Div)
}

/// x * mul + add, elementwise.
pub fn affine(x: &Tensor, mul: f32, add: f32) -> Result<Tensor> {
    let _p = crate::profile::op("affine");
    check_float("affine", x)?;
    match x.device() {
        Device::Cpu => crate::cpu::elementwise::affine(x, mul, add),
        Device::Cuda(d) => cuda::elementwise::affine(&d, x, mul, add),
    }
}

/// x * s.
pub fn scale(x: &Tensor, s: f32) -> Result<Tensor> {
    affine(x, s, 0.0)
}

/// x converted to `dtype` on its device (a cheap clone when it already is `dtype`): floats
/// round to the nearest even, floats to ints truncate toward zero.
pub fn to_dtype(x: &Tensor, dtype: DType) -> Result<Tensor> {
    let _p = crate::profile::op("to_dtype");
    if dtype == x.dtype() {
        return Ok(x.clone());
    }
    match x.device() {
        Device::Cpu => crate::cpu::elementwise::cast(x, dtype),
        Device::Cuda(d) => cuda::elementwise::cast(&d, x, dtype),
    }
}
