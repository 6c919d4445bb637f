//! Shape: the dims of a contiguous row-major tensor, with rank-checked destructuring
//! (`let (n, c, h, w) = x.dims4("conv2d")?`).

use crate::{Error, Result};
use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(Vec<usize>);

impl Shape {
    pub fn new(dims: Vec<usize>) -> Self {
        Shape(dims)
    }

    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }

    /// Row-major strides in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut strides = vec![1; self.0.len()];
        for i in (0..self.0.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * self.0[i + 1];
        }
        strides
    }

    /// The size of dim `d`; negative `d` counts from the end.
    pub fn dim(&self, d: isize) -> Result<usize> {
        let idx = self.resolve_dim(d)?;
        Ok(self.0[idx])
    }

    /// Turns a possibly negative dim index into a position.
    pub fn resolve_dim(&self, d: isize) -> Result<usize> {
        let r = self.0.len() as isize;
        let idx = if d < 0 { d + r } else { d };
        if idx < 0 || idx >= r {
            return Err(Error::Internal(format!("dim {d} out of range for shape {self}")));
        }
        Ok(idx as usize)
    }

    /// Product of the dims before `d` and from `d` on: the (rows, cols) of a 2D view.
    pub fn split_at(&self, d: usize) -> (usize, usize) {
        (self.0[..d].iter().product(), self.0[d..].iter().product())
    }

    fn expect_rank(&self, rank: usize, op: &'static str) -> Result<()> {
        if self.0.len() != rank {
            return Err(Error::op(op, format!("expected a rank-{rank} tensor, got shape {self}")));
        }
        Ok(())
    }

    pub fn dims1(&self, op: &'static str) -> Result<usize> {
        self.expect_rank(1, op)?;
        Ok(self.0[0])
    }

    pub fn dims2(&self, op: &'static str) -> Result<(usize, usize)> {
        self.expect_rank(2, op)?;
        Ok((self.0[0], self.0[1]))
    }

    pub fn dims3(&self, op: &'static str) -> Result<(usize, usize, usize)> {
        self.expect_rank(3, op)?;
        Ok((self.0[0], self.0[1], self.0[2]))
    }

    pub fn dims4(&self, op: &'static str) -> Result<(usize, usize, usize, usize)> {
        self.expect_rank(4, op)?;
        Ok((self.0[0], self.0[1], self.0[2], self.0[3]))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<Vec<usize>> for Shape {
    fn from(v: Vec<usize>) -> Self {
        Shape(v)
    }
}

impl From<&[usize]> for Shape {
    fn from(v: &[usize]) -> Self {
        Shape(v.to_vec())
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(v: [usize; N]) -> Self {
        Shape(v.to_vec())
    }
}

impl From<&Shape> for Shape {
    fn from(s: &Shape) -> Self {
        s.clone()
    }
}

impl From<usize> for Shape {
    fn from(n: usize) -> Self {
        Shape(vec![n])
    }
}

impl From<()> for Shape {
    fn from(_: ()) -> Self {
        Shape(vec![])
    }
}
