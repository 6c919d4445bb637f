//! Elementwise ops: activations (forward and backward), GEGLU, broadcasting add/sub/mul/div,
//! affine. Shapes and dtypes are checked here; the backends trust the checks.

use super::{check_float, check_same_device, check_same_dtype};
use crate::cuda;
use crate::tensor::{Device, Shape, Tensor};
use crate::{ensure_op, Error, Result};

/// The pointwise activations the models use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unary {
    Relu,
    /// x * sigmoid(x)
    Silu,
    /// Exact GELU: x * Phi(x), with the erf.
    Gelu,
    /// GELU with the tanh approximation (DiT's MLP, `gelu_pytorch_tanh`).
    GeluTanh,
    /// x * sigmoid(1.702 x) (CLIP ViT-L/14's text tower, `quick_gelu`).
    QuickGelu,
}

impl Unary {
    pub const ALL: [Unary; 5] = [Unary::Relu, Unary::Silu, Unary::Gelu, Unary::GeluTanh, Unary::QuickGelu];

    pub fn name(self) -> &'static str {
        match self {
            Unary::Relu => "relu",
            Unary::Silu => "silu",
            Unary::Gelu => "gelu",
            Unary::GeluTanh => "gelu_tanh",
            Unary::QuickGelu => "quick_gelu",
        }
    }

    /// Parses an activation name as diffusers and transformers configs write it.
    pub fn parse(s: &str) -> Option<Unary> {
        match s {
            "relu" => Some(Unary::Relu),
            "silu" | "swish" => Some(Unary::Silu),
            "gelu" => Some(Unary::Gelu),
            "gelu_tanh" | "gelu_pytorch_tanh" | "gelu_new" | "gelu-approximate" => Some(Unary::GeluTanh),
            "quick_gelu" => Some(Unary::QuickGelu),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
}

/// How two operands broadcast to the output: numpy rules (dims aligned from the right; a dim
/// of 1 or a missing dim stretches). Strides are per output dim, 0 where an operand repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastPlan {
    pub out: Shape,
    pub a_strides: Vec<usize>,
    pub b_strides: Vec<usize>,
}

impl BroadcastPlan {
    pub fn new(op: &'static str, a: &Shape, b: &Shape) -> Result<BroadcastPlan> {
        let rank = a.rank().max(b.rank());
        let pad = |s: &Shape| -> Vec<usize> {
            let mut d = vec![1; rank - s.rank()];
            d.extend_from_slice(s.dims());
            d
        };
        let (ad, bd) = (pad(a), pad(b));
        let mut out = Vec::with_capacity(rank);
        for i in 0..rank {
            let o = match (ad[i], bd[i]) {
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => return Err(Error::op(op, format!("shapes {a} and {b} do not broadcast (dim {i} of the aligned shapes)"))),
            };
            out.push(o);
        }
        let strides = |d: &[usize]| -> Vec<usize> {
            let full = Shape::new(d.to_vec()).strides();
            d.iter().zip(full).map(|(&n, s)| if n == 1 { 0 } else { s }).collect()
        };
        Ok(BroadcastPlan { a_strides: strides(&ad), b_strides: strides(&bd), out: Shape::new(out) })
    }
}

/// y = f(x), same shape and dtype.
pub fn unary(x: &Tensor, op: Unary) -> Result<Tensor> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_plan_follows_numpy_rules() {
        let p = BroadcastPlan::new("t", &Shape::from([2, 3, 4]), &Shape::from([3, 1])).unwrap();
        assert_eq!(p.out, Shape::from([2, 3, 4]));
        assert_eq!(p.a_strides, vec![12, 4, 1]);
        assert_eq!(p.b_strides, vec![0, 1, 0]);
        assert!(BroadcastPlan::new("t", &Shape::from([2, 3]), &Shape::from([4])).is_err());
    }
}
