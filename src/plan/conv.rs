//! The convolution plan: stride and padding (`Conv2dParams`), every size of one call checked
//! once (`Conv2dGeom`), and the gradients the backward returns (`Conv2dGrads`).
//!
//! Legend: N = batch, Cin/Cout = channels, H, W = input size, kh, kw = kernel size,
//! OH, OW = output size, K = Cin * kh * kw.

use crate::tensor::Tensor;
use crate::{ensure_op, Error, Result};

/// Stride and zero padding of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    /// (vertical, horizontal) step between output pixels, in input pixels.
    pub stride: (usize, usize),
    /// Zero rows/columns added around the input: [top, bottom, left, right]. Asymmetric
    /// padding exists for diffusers' VAE `Downsample2D`, which pads (0, 1, 0, 1) and then
    /// convolves 3x3 with stride 2 and no padding.
    pub padding: [usize; 4],
}

impl Conv2dParams {
    /// The same stride along both axes and the same padding on all four sides.
    pub fn new(stride: usize, padding: usize) -> Self {
        Conv2dParams { stride: (stride, stride), padding: [padding; 4] }
    }

    /// The output size for an h x w input and a kh x kw kernel, or an error if the kernel
    /// does not fit the padded input or a stride is 0.
    pub fn out_hw(&self, h: usize, w: usize, kh: usize, kw: usize) -> Result<(usize, usize)> {
        let (sh, sw) = self.stride;
        let [pt, pb, pl, pr] = self.padding;
        ensure_op!(sh > 0 && sw > 0, "conv2d", "stride {:?} must be at least 1", self.stride);
        let (ph, pw) = (h + pt + pb, w + pl + pr);
        ensure_op!(
            kh > 0 && kw > 0 && kh <= ph && kw <= pw,
            "conv2d",
            "a {kh}x{kw} kernel does not fit the {h}x{w} input padded by {:?} ({ph}x{pw})",
            self.padding
        );
        Ok(((ph - kh) / sh + 1, (pw - kw) / sw + 1))
    }
}

/// Every size of one convolution, checked by `conv2d` / `conv2d_backward`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeom {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub stride: (usize, usize),
    /// [top, bottom, left, right]
    pub padding: [usize; 4],
}

impl Conv2dGeom {
    /// Checks x [N, Cin, H, W] against weight [Cout, Cin, kh, kw] and the params.
    pub fn new(op: &'static str, x: &Tensor, weight: &Tensor, p: &Conv2dParams) -> Result<Conv2dGeom> {
        let (n, cin, h, w) = x.dims4(op)?;
        let (cout, wcin, kh, kw) = weight.dims4(op)?;
        ensure_op!(
            cin == wcin,
            op,
            "x {} has {cin} channels, weight {} takes {wcin} ([Cout, Cin, kh, kw])",
            x.shape(),
            weight.shape()
        );
        ensure_op!(cin > 0 && cout > 0 && h > 0 && w > 0, op, "empty operand: x {}, weight {}", x.shape(), weight.shape());
        let (oh, ow) = p
            .out_hw(h, w, kh, kw)
            .map_err(|e| Error::op(op, format!("x {}, weight {}: {e}", x.shape(), weight.shape())))?;
        Ok(Conv2dGeom { n, cin, h, w, cout, kh, kw, oh, ow, stride: p.stride, padding: p.padding })
    }

    /// K = Cin * kh * kw: the length of one im2col column.
    pub fn k(&self) -> usize {
        self.cin * self.kh * self.kw
    }

    pub fn out_dims(&self) -> [usize; 4] {
        [self.n, self.cout, self.oh, self.ow]
    }

    /// A 1x1 kernel with stride 1 and no padding: a plain GEMM per image.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == (1, 1) && self.padding == [0; 4]
    }
}

/// Gradients of `conv2d`. `dx` is present when asked for, `dbias` when the layer has a bias.
#[derive(Debug, Clone)]
pub struct Conv2dGrads {
    /// [N, Cin, H, W], like x.
    pub dx: Option<Tensor>,
    /// [Cout, Cin, kh, kw], like the weight.
    pub dweight: Tensor,
    /// [Cout].
    pub dbias: Option<Tensor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_hw_follows_the_padded_size() {
        assert_eq!(Conv2dParams::new(1, 1).out_hw(64, 64, 3, 3).unwrap(), (64, 64));
        assert_eq!(Conv2dParams::new(2, 1).out_hw(64, 64, 3, 3).unwrap(), (32, 32));
        let down = Conv2dParams { stride: (2, 2), padding: [0, 1, 0, 1] };
        assert_eq!(down.out_hw(64, 64, 3, 3).unwrap(), (32, 32));
        assert_eq!(Conv2dParams::new(2, 0).out_hw(5, 7, 4, 4).unwrap(), (1, 2));
        assert!(Conv2dParams::new(1, 0).out_hw(2, 8, 3, 3).is_err());
        assert!(Conv2dParams::new(0, 1).out_hw(8, 8, 3, 3).is_err());
    }
}
