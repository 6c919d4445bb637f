//! The elementwise plan: the activations (`Unary`), the binary ops, and how two operands
//! broadcast (`BroadcastPlan`, numpy's rules).

use crate::tensor::Shape;
use crate::{Error, Result};

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
