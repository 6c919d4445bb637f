//! The reduction plan: x seen as [outer, n, inner] and reduced over n.

use crate::tensor::Shape;
use crate::{Error, Result};

/// What a one-dim reduction reduces over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Mean,
    /// Propagates NaN: a row holding a NaN has max NaN.
    Max,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
        }
    }
}

/// x seen as [outer, n, inner], reduced over n; `out` is the output shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReducePlan {
    pub outer: usize,
    pub n: usize,
    pub inner: usize,
    pub out: Shape,
}

impl ReducePlan {
    /// The plan for reducing `shape` over `dim` (negative counts from the end).
    pub fn new(op: &'static str, shape: &Shape, dim: isize, keepdim: bool) -> Result<ReducePlan> {
        let d = shape
            .resolve_dim(dim)
            .map_err(|_| Error::op(op, format!("dim {dim} is out of range for x {shape}")))?;
        let dims = shape.dims();
        let mut out = dims.to_vec();
        if keepdim {
            out[d] = 1;
        } else {
            out.remove(d);
        }
        Ok(ReducePlan {
            outer: dims[..d].iter().product(),
            n: dims[d],
            inner: dims[d + 1..].iter().product(),
            out: Shape::new(out),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_splits_shape_around_dim() {
        let s = Shape::from([2, 3, 4, 5]);
        let p = ReducePlan::new("t", &s, 1, false).unwrap();
        assert_eq!((p.outer, p.n, p.inner), (2, 3, 20));
        assert_eq!(p.out, Shape::from([2, 4, 5]));
        let p = ReducePlan::new("t", &s, -1, true).unwrap();
        assert_eq!((p.outer, p.n, p.inner), (24, 5, 1));
        assert_eq!(p.out, Shape::from([2, 3, 4, 1]));
        assert!(ReducePlan::new("t", &s, 4, false).is_err());
        assert!(ReducePlan::new("t", &s, -5, false).is_err());
    }
}
