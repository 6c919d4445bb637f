//! The VAE encoder (diffusers 0.42 `models/autoencoders/vae.py` `Encoder`, with
//! `double_z`): conv_in, DownEncoderBlock2D per level, the mid block, GroupNorm + SiLU, conv_out
//! to 2 * latent_channels (the posterior's mean and log-variance).
//!
//! Legend: B = batch, H, W = image size, h, w = latent size (H / 2^(levels - 1)), L = latent
//! channels.

use super::blocks::{DownEncoderBlock2D, UNetMidBlock2D, EPS};
use super::config::AutoencoderKLConfig;
use crate::models::taps::Taps;
use crate::models::common::layers::{Conv2d, GroupNorm};
use crate::models::common::visit::{step, visit};
use crate::models::weights::Scope;
use crate::tensor::Tensor;
use crate::Result;

pub struct Encoder {
    conv_in: Conv2d,
    down_blocks: Vec<DownEncoderBlock2D>,
    mid_block: UNetMidBlock2D,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    path: String,
}

impl Encoder {
    /// `s` is the `encoder` scope.
    pub fn load(s: &Scope, c: &AutoencoderKLConfig) -> Result<Self> {
        let ch = &c.block_out_channels;
        let n = ch.len();
        let g = c.norm_num_groups;
        let down_blocks = (0..n)
            .map(|i| {
                let cin = if i == 0 { ch[0] } else { ch[i - 1] };
                DownEncoderBlock2D::load(&s.pp("down_blocks").pp(i), c.layers_per_block, cin, ch[i], g, i + 1 < n)
            })
            .collect::<Result<_>>()?;
        Ok(Encoder {
            conv_in: Conv2d::load(&s.pp("conv_in"), c.in_channels, ch[0], 3, 1, 1)?,
            down_blocks,
            mid_block: UNetMidBlock2D::load(&s.pp("mid_block"), ch[n - 1], g, c.mid_block_add_attention)?,
            conv_norm_out: GroupNorm::load(&s.pp("conv_norm_out"), ch[n - 1], g, EPS)?,
            conv_out: Conv2d::load(&s.pp("conv_out"), ch[n - 1], 2 * c.latent_channels, 3, 1, 1)?,
            path: s.path().to_string(),
        })
    }

    pub fn tap_names(&self, out: &mut Vec<String>) {
        out.push(format!("{}.conv_in", self.path));
        self.down_blocks.iter().for_each(|b| b.tap_names(out));
        self.mid_block.tap_names(out);
        out.push(format!("{}.conv_out", self.path));
    }

    /// images: [B, Cin, H, W] -> the moments [B, 2L, h, w]; None: stopped after a tap.
    pub fn forward(&self, images: &Tensor, taps: &mut Taps) -> Result<Option<Tensor>> {
        let _r = crate::trace::range(&self.path);
        let out = self.conv_in.forward(images)?;
        let mut h = step!(visit(taps, &format!("{}.conv_in", self.path), images, out));
        for b in &self.down_blocks {
            h = step!(b.forward(&h, taps));
        }
        h = step!(self.mid_block.forward(&h, taps));
        let out = self.conv_out.forward(&self.conv_norm_out.forward(&h, true)?)?;
        visit(taps, &format!("{}.conv_out", self.path), &h, out)
    }
}
