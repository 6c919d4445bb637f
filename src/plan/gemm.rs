//! The matrix-product plan: one batched product `C[b] = op(A[b]) @ op(B[b])` with its sizes,
//! transposes and batch broadcast. Legend: B = batch, M = rows, N = columns, K = reduced dim.

use crate::tensor::Shape;
use crate::{ensure_op, Error, Result};

/// One batched product `C[b] = op(A[b]) @ op(B[b])` as the backends run it: op(A) is [m, k],
/// op(B) is [k, n], C is [batch, m, n] row-major. A is stored [k, m] when `trans_a`, B is
/// stored [n, k] when `trans_b`. An operand with `*_batched == false` is one matrix reused for
/// every batch entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulPlan {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub a_batched: bool,
    pub b_batched: bool,
}

impl MatmulPlan {
    /// The plan for `a` and `b` as `matmul_t` takes them, or an error naming both shapes.
    pub fn new(op: &'static str, a: &Shape, b: &Shape, trans_a: bool, trans_b: bool) -> Result<MatmulPlan> {
        let split = |s: &Shape, name: &str| -> Result<(Option<usize>, usize, usize)> {
            match *s.dims() {
                [r, c] => Ok((None, r, c)),
                [bt, r, c] => Ok((Some(bt), r, c)),
                _ => Err(Error::op(op, format!("{name} must be rank 2 or 3, got shape {s} (with the other operand {})", if name == "a" { b } else { a }))),
            }
        };
        let (ab, ar, ac) = split(a, "a")?;
        let (bb, br, bc) = split(b, "b")?;
        let (m, ka) = if trans_a { (ac, ar) } else { (ar, ac) };
        let (kb, n) = if trans_b { (bc, br) } else { (br, bc) };
        ensure_op!(
            ka == kb,
            op,
            "inner dims differ: a {a}{} gives K = {ka}, b {b}{} gives K = {kb}",
            if trans_a { " (transposed)" } else { "" },
            if trans_b { " (transposed)" } else { "" }
        );
        let batch = match (ab, bb) {
            (Some(x), Some(y)) => {
                ensure_op!(x == y, op, "batch sizes differ: a {a}, b {b}");
                x
            }
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => 1,
        };
        Ok(MatmulPlan { batch, m, n, k: ka, trans_a, trans_b, a_batched: ab.is_some(), b_batched: bb.is_some() })
    }

    /// The result's shape: [m, n] when neither operand has a batch dim, else [batch, m, n].
    pub fn out_shape(&self) -> Shape {
        if self.a_batched || self.b_batched {
            Shape::from([self.batch, self.m, self.n])
        } else {
            Shape::from([self.m, self.n])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_reads_transposes_and_batches() {
        let p = MatmulPlan::new("t", &Shape::from([4, 3, 5]), &Shape::from([7, 3]), true, true).unwrap();
        assert_eq!((p.batch, p.m, p.n, p.k), (4, 5, 7, 3));
        assert!(p.a_batched && !p.b_batched);
        assert_eq!(p.out_shape(), Shape::from([4, 5, 7]));
        let p = MatmulPlan::new("t", &Shape::from([2, 3]), &Shape::from([3, 6]), false, false).unwrap();
        assert_eq!(p.out_shape(), Shape::from([2, 6]));
        assert!(MatmulPlan::new("t", &Shape::from([2, 3, 4]), &Shape::from([3, 4, 5]), false, false).is_err());
        assert!(MatmulPlan::new("t", &Shape::from([2, 3]), &Shape::from([4, 5]), false, false).is_err());
    }
}
