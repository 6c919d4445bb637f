//! The VAE decoder (diffusers 0.42 `models/autoencoders/vae.py` `Decoder`, group norm): conv_in,
//! the mid block, UpDecoderBlock2D per level (deepest first), GroupNorm + SiLU, conv_out.
//!
//! Legend: B = batch, L = latent channels, h, w = latent size, H, W = image size.

use super::blocks::{UNetMidBlock2D, UpDecoderBlock2D, EPS};
use super::config::AutoencoderKLConfig;
use crate::models::taps::Taps;
use crate::models::common::layers::{Conv2d, GroupNorm};
use crate::models::common::visit::{step, visit};
use crate::models::weights::Scope;
use crate::tensor::Tensor;
use crate::Result;

pub struct Decoder {
    conv_in: Conv2d,
    mid_block: UNetMidBlock2D,
    up_blocks: Vec<UpDecoderBlock2D>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    path: String,
}

impl Decoder {
    /// `s` is the `decoder` scope.
    pub fn load(s: &Scope, c: &AutoencoderKLConfig) -> Result<Self> {
        let ch = &c.block_out_channels;
        let n = ch.len();
        let g = c.norm_num_groups;
        // up block i works at level n - 1 - i; its input comes from level n - i (or the mid block)
        let up_blocks = (0..n)
            .map(|i| {
                let cin = ch[n - 1 - i.saturating_sub(1)];
                let cout = ch[n - 1 - i];
                UpDecoderBlock2D::load(&s.pp("up_blocks").pp(i), c.layers_per_block + 1, cin, cout, g, i + 1 < n)
            })
            .collect::<Result<_>>()?;
        Ok(Decoder {
            conv_in: Conv2d::load(&s.pp("conv_in"), c.latent_channels, ch[n - 1], 3, 1, 1)?,
            mid_block: UNetMidBlock2D::load(&s.pp("mid_block"), ch[n - 1], g, c.mid_block_add_attention)?,
            up_blocks,
            conv_norm_out: GroupNorm::load(&s.pp("conv_norm_out"), ch[0], g, EPS)?,
            conv_out: Conv2d::load(&s.pp("conv_out"), ch[0], c.out_channels, 3, 1, 1)?,
            path: s.path().to_string(),
        })
    }

    pub fn tap_names(&self, out: &mut Vec<String>) {
        out.push(format!("{}.conv_in", self.path));
        self.mid_block.tap_names(out);
        self.up_blocks.iter().for_each(|b| b.tap_names(out));
        out.push(format!("{}.conv_out", self.path));
    }

    /// z: [B, L, h, w] (after post_quant_conv) -> images [B, Cout, H, W]; None: stopped.
    pub fn forward(&self, z: &Tensor, taps: &mut Taps) -> Result<Option<Tensor>> {
        let _r = crate::trace::range(&self.path);
        let out = self.conv_in.forward(z)?;
        let mut h = step!(visit(taps, &format!("{}.conv_in", self.path), z, out));
        h = step!(self.mid_block.forward(&h, taps));
        for b in &self.up_blocks {
            h = step!(b.forward(&h, taps));
        }
        let out = self.conv_out.forward(&self.conv_norm_out.forward(&h, true)?)?;
        Ok(Some(taps.visit(&format!("{}.conv_out", self.path), &h, out)?))
    }
}
