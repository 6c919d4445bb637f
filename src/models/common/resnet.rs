//! `ResnetBlock2D`, `Downsample2D` and `Upsample2D` as in diffusers 0.42 (`models/resnet.py`,
//! `models/downsampling.py`, `models/upsampling.py`), shared by the U-Net and the VAE.
//!
//! Legend: N = batch, Cin/Cout = channels, H, W = spatial size, T = time embedding width.

use crate::models::common::layers::{Conv2d, GroupNorm, Linear};
use crate::models::weights::Scope;
use crate::ops;
use crate::tensor::Tensor;
use crate::Result;

/// How a resnet adds the time embedding (`time_embedding_norm` / `resnet_time_scale_shift`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeNorm {
    /// No time embedding (the VAE's resnets).
    None,
    /// h = norm2(h + proj(temb)) (SD).
    Default,
    /// h = norm2(h) * (1 + scale) + shift with (scale, shift) = proj(temb) split in half.
    ScaleShift,
}

/// Sizes and options of one ResnetBlock2D.
#[derive(Debug, Clone, Copy)]
pub struct ResnetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// T, the width of `temb` (ignored with `TimeNorm::None`).
    pub temb_channels: usize,
    pub groups: usize,
    pub eps: f64,
    pub time_norm: TimeNorm,
    /// The output is (shortcut + h) / output_scale_factor.
    pub output_scale_factor: f64,
}

/// GroupNorm+SiLU -> conv3x3 -> (+temb) -> GroupNorm(+SiLU) -> conv3x3, plus a shortcut (a 1x1
/// conv when the channel count changes).
pub struct ResnetBlock2D {
    path: String,
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    time_norm: TimeNorm,
    out_channels: usize,
    output_scale_factor: f64,
}

impl ResnetBlock2D {
    pub fn load(s: &Scope, c: &ResnetConfig) -> Result<Self> {
        let (cin, cout) = (c.in_channels, c.out_channels);
        let time_emb_proj = match c.time_norm {
            TimeNorm::None => None,
            TimeNorm::Default => Some(Linear::load(&s.pp("time_emb_proj"), c.temb_channels, cout, true)?),
            TimeNorm::ScaleShift => Some(Linear::load(&s.pp("time_emb_proj"), c.temb_channels, 2 * cout, true)?),
        };
        Ok(ResnetBlock2D {
            path: s.path().to_string(),
            norm1: GroupNorm::load(&s.pp("norm1"), cin, c.groups, c.eps)?,
            conv1: Conv2d::load(&s.pp("conv1"), cin, cout, 3, 1, 1)?,
            time_emb_proj,
            norm2: GroupNorm::load(&s.pp("norm2"), cout, c.groups, c.eps)?,
            conv2: Conv2d::load(&s.pp("conv2"), cout, cout, 3, 1, 1)?,
            conv_shortcut: if cin != cout { Some(Conv2d::load(&s.pp("conv_shortcut"), cin, cout, 1, 1, 0)?) } else { None },
            time_norm: c.time_norm,
            out_channels: cout,
            output_scale_factor: c.output_scale_factor,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// x: [N, Cin, H, W], temb_act: SiLU(temb) [N, T] (None for the VAE) -> [N, Cout, H, W].
    /// The caller applies the SiLU once for all resnets (diffusers applies it in each).
    pub fn forward(&self, x: &Tensor, temb_act: Option<&Tensor>) -> Result<Tensor> {
        let _r = crate::trace::range(&self.path);
        // 1. norm1 + SiLU, conv1
        let mut h = self.conv1.forward(&self.norm1.forward(x, true)?)?;
        // 2. the time embedding, then norm2 + SiLU
        let proj = match (&self.time_emb_proj, temb_act) {
            (Some(p), Some(t)) => Some(p.forward(t)?),
            (Some(_), None) => {
                return Err(crate::Error::Internal(format!("{}: this resnet needs a time embedding", self.path)));
            }
            _ => None,
        };
        h = match (self.time_norm, proj) {
            (TimeNorm::Default, Some(t)) => {
                let n = t.dims()[0];
                // [N, Cout] -> [N, Cout, 1, 1], broadcast over H, W
                let t = t.reshape([n, self.out_channels, 1, 1])?;
                self.norm2.forward(&ops::add(&h, &t)?, true)?
            }
            (TimeNorm::ScaleShift, Some(t)) => {
                let n = t.dims()[0];
                let c = self.out_channels;
                let scale = ops::layout::narrow(&t, 1, 0, c)?.reshape([n, c, 1, 1])?;
                let shift = ops::layout::narrow(&t, 1, c, c)?.reshape([n, c, 1, 1])?;
                let normed = self.norm2.forward(&h, false)?;
                // h * (1 + scale) + shift, as diffusers writes it
                let scaled = ops::mul(&normed, &ops::affine(&scale, 1.0, 1.0)?)?;
                ops::silu(&ops::add(&scaled, &shift)?)?
            }
            _ => self.norm2.forward(&h, true)?,
        };
        // 3. conv2 (dropout is the identity at inference)
        h = self.conv2.forward(&h)?;
        // 4. the shortcut, the sum, the output scale
        let shortcut = match &self.conv_shortcut {
            Some(c) => c.forward(x)?,
            None => x.clone(),
        };
        let out = ops::add(&shortcut, &h)?;
        if self.output_scale_factor == 1.0 {
            Ok(out)
        } else {
            // diffusers divides; a multiply by the f32 reciprocal differs by at most 1 ulp.
            ops::scale(&out, (1.0 / self.output_scale_factor) as f32)
        }
    }
}

/// A stride-2 3x3 conv. padding 0 means diffusers' asymmetric F.pad(0, 1, 0, 1) then no
/// padding (the VAE, `downsample_padding` = 0):
/// <https://github.com/huggingface/diffusers/blob/v0.42.1/src/diffusers/models/downsampling.py#L139>.
pub struct Downsample2D {
    path: String,
    conv: Conv2d,
}

impl Downsample2D {
    pub fn load(s: &Scope, channels: usize, padding: usize) -> Result<Self> {
        let pad = if padding == 0 { [0, 1, 0, 1] } else { [padding; 4] };
        Ok(Downsample2D { path: s.path().to_string(), conv: Conv2d::load_padded(&s.pp("conv"), channels, channels, 3, 2, pad)? })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// x: [N, C, H, W] -> [N, C, OH, OW] (OH = ceil(H / 2) with padding 1, floor(H / 2) with 0).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let _r = crate::trace::range(&self.path);
        self.conv.forward(x)
    }
}

/// Nearest-neighbour upsampling (2x, or to the skip connection's size when the U-Net's input
/// is not a multiple of 2^levels: diffusers' `upsample_size`), then a 3x3 conv.
pub struct Upsample2D {
    path: String,
    conv: Conv2d,
}

impl Upsample2D {
    pub fn load(s: &Scope, channels: usize) -> Result<Self> {
        Ok(Upsample2D { path: s.path().to_string(), conv: Conv2d::load(&s.pp("conv"), channels, channels, 3, 1, 1)? })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// x: [N, C, H, W] -> [N, C, 2H, 2W], or [N, C, size.0, size.1] when `size` is given
    /// (torch's `interpolate(size=..., mode="nearest")`:
    /// <https://github.com/huggingface/diffusers/blob/v0.42.1/src/diffusers/models/upsampling.py#L177>).
    pub fn forward(&self, x: &Tensor, size: Option<(usize, usize)>) -> Result<Tensor> {
        let _r = crate::trace::range(&self.path);
        let up = match size {
            None => ops::layout::upsample_nearest2x(x)?,
            Some((oh, ow)) => ops::layout::upsample_nearest(x, oh, ow)?,
        };
        self.conv.forward(&up)
    }
}
