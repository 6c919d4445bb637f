//! The U-Net's blocks as diffusers 0.42 builds them (`models/unets/unet_2d_blocks.py`):
//! `CrossAttnDownBlock2D` and `DownBlock2D` (one struct: the latter has no attentions),
//! `UNetMidBlock2DCrossAttn`, `UpBlock2D` and `CrossAttnUpBlock2D` (one struct likewise).
//!
//! Legend: B = batch, C = channels, H, W = spatial size, T = time embedding width,
//! S = text tokens, Cc = cross_attention_dim.
//!
//! Taps: each block visits every resnet, attention (Transformer2DModel) and down/upsampler by
//! its module path as it finishes, then itself (its output: the hidden states it passes on, after
//! its down/upsampler); any visit may end the pass early (`None`).

use crate::models::common::resnet::{Downsample2D, ResnetBlock2D, ResnetConfig, TimeNorm, Upsample2D};
use super::transformer::{Transformer2DModel, TransformerConfig};
use crate::models::common::visit::{step, visit};
use crate::models::taps::Taps;
use crate::models::weights::Scope;
use crate::ops;
use crate::tensor::Tensor;
use crate::Result;

/// What every block of one forward pass shares.
pub struct Cond<'a> {
    /// SiLU(time embedding): [B, T]
    pub temb_act: &'a Tensor,
    /// The text states: [B, S, Cc]
    pub context: &'a Tensor,
}

/// Options every block of one U-Net shares.
#[derive(Debug, Clone, Copy)]
pub struct BlockOptions {
    pub temb_channels: usize,
    pub groups: usize,
    pub eps: f64,
    pub time_norm: TimeNorm,
    pub cross_attention_dim: usize,
    pub use_linear_projection: bool,
}

impl BlockOptions {
    fn resnet(&self, cin: usize, cout: usize, output_scale_factor: f64) -> ResnetConfig {
        ResnetConfig {
            in_channels: cin,
            out_channels: cout,
            temb_channels: self.temb_channels,
            groups: self.groups,
            eps: self.eps,
            time_norm: self.time_norm,
            output_scale_factor,
        }
    }

    fn transformer(&self, channels: usize, heads: usize, layers: usize) -> TransformerConfig {
        TransformerConfig {
            channels,
            heads,
            layers,
            cross_attention_dim: self.cross_attention_dim,
            groups: self.groups,
            use_linear_projection: self.use_linear_projection,
        }
    }
}

/// Sizes of one down or up block.
#[derive(Debug, Clone, Copy)]
pub struct BlockSizes {
    /// Resnets in the block (up blocks: layers_per_block + 1).
    pub layers: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    /// Up blocks: the channels coming from the block below (diffusers' prev_output_channel).
    pub prev_channels: usize,
    /// Some((heads, transformer layers)) for the CrossAttn variants.
    pub attention: Option<(usize, usize)>,
}

/// Runs resnet `i` of a block and, in the CrossAttn variants, attention `i` after it.
fn resnet_then_attention(
    resnet: &ResnetBlock2D,
    attention: Option<&Transformer2DModel>,
    h: Tensor,
    cond: &Cond,
    taps: &mut Taps,
) -> Result<Option<Tensor>> {
    let out = resnet.forward(&h, Some(cond.temb_act))?;
    let mut h2 = step!(visit(taps, resnet.path(), &h, out));
    if let Some(a) = attention {
        let out = step!(a.forward(&h2, cond.context, taps));
        h2 = step!(visit(taps, a.path(), &h2, out));
    }
    Ok(Some(h2))
}

/// `CrossAttnDownBlock2D` (resnet, transformer pairs) or `DownBlock2D` (resnets only), then an
/// optional stride-2 downsampler.
pub struct DownBlock {
    path: String,
    resnets: Vec<ResnetBlock2D>,
    /// Empty for DownBlock2D.
    attentions: Vec<Transformer2DModel>,
    downsampler: Option<Downsample2D>,
}

impl DownBlock {
    pub fn load(s: &Scope, z: &BlockSizes, o: &BlockOptions, add_downsample: bool, downsample_padding: usize) -> Result<Self> {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for i in 0..z.layers {
            let cin = if i == 0 { z.in_channels } else { z.out_channels };
            resnets.push(ResnetBlock2D::load(&s.pp("resnets").pp(i), &o.resnet(cin, z.out_channels, 1.0))?);
            if let Some((heads, tl)) = z.attention {
                attentions.push(Transformer2DModel::load(&s.pp("attentions").pp(i), &o.transformer(z.out_channels, heads, tl))?);
            }
        }
        let downsampler = if add_downsample {
            Some(Downsample2D::load(&s.pp("downsamplers").pp(0), z.out_channels, downsample_padding)?)
        } else {
            None
        };
        Ok(DownBlock { path: s.path().to_string(), resnets, attentions, downsampler })
    }

    /// Tap paths in execution order (inner modules first, the block last).
    pub fn tap_names(&self, out: &mut Vec<String>) {
        for (i, r) in self.resnets.iter().enumerate() {
            out.push(r.path().to_string());
            if let Some(a) = self.attentions.get(i) {
                a.tap_names(out);
                out.push(a.path().to_string());
            }
        }
        if let Some(d) = &self.downsampler {
            out.push(d.path().to_string());
        }
        out.push(self.path.clone());
    }

    /// x: [B, Cin, H, W] -> (hidden states [B, C, H', W'], the skip states for the up path:
    /// each resnet's (or attention's) output and the downsampler's). None: stopped early.
    pub fn forward(&self, x: &Tensor, cond: &Cond, taps: &mut Taps) -> Result<Option<(Tensor, Vec<Tensor>)>> {
        let _r = crate::trace::range(&self.path);
        let mut res = Vec::with_capacity(self.resnets.len() + 1);
        let mut h = x.clone();
        for (i, r) in self.resnets.iter().enumerate() {
            h = step!(resnet_then_attention(r, self.attentions.get(i), h, cond, taps));
            res.push(h.clone());
        }
        if let Some(d) = &self.downsampler {
            let out = d.forward(&h)?;
            h = step!(visit(taps, d.path(), &h, out));
            res.push(h.clone());
        }
        let h = step!(visit(taps, &self.path, x, h));
        Ok(Some((h, res)))
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, then (transformer, resnet) pairs (one pair in SD). Its
/// resnets divide by `mid_block_scale_factor`.
pub struct MidBlock {
    path: String,
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2DModel>,
}

impl MidBlock {
    pub fn load(s: &Scope, channels: usize, heads: usize, transformer_layers: usize, o: &BlockOptions, scale_factor: f64) -> Result<Self> {
        let rc = o.resnet(channels, channels, scale_factor);
        Ok(MidBlock {
            path: s.path().to_string(),
            resnets: vec![
                ResnetBlock2D::load(&s.pp("resnets").pp(0), &rc)?,
                ResnetBlock2D::load(&s.pp("resnets").pp(1), &rc)?,
            ],
            attentions: vec![Transformer2DModel::load(&s.pp("attentions").pp(0), &o.transformer(channels, heads, transformer_layers))?],
        })
    }

    pub fn tap_names(&self, out: &mut Vec<String>) {
        out.push(self.resnets[0].path().to_string());
        for (a, r) in self.attentions.iter().zip(&self.resnets[1..]) {
            a.tap_names(out);
            out.push(a.path().to_string());
            out.push(r.path().to_string());
        }
        out.push(self.path.clone());
    }

    /// x: [B, C, H, W] -> [B, C, H, W]; None: stopped early.
    pub fn forward(&self, x: &Tensor, cond: &Cond, taps: &mut Taps) -> Result<Option<Tensor>> {
        let _r = crate::trace::range(&self.path);
        let out = self.resnets[0].forward(x, Some(cond.temb_act))?;
        let mut h = step!(visit(taps, self.resnets[0].path(), x, out));
        for (a, r) in self.attentions.iter().zip(&self.resnets[1..]) {
            let out = step!(a.forward(&h, cond.context, taps));
            h = step!(visit(taps, a.path(), &h, out));
            let out = r.forward(&h, Some(cond.temb_act))?;
            h = step!(visit(taps, r.path(), &h, out));
        }
        visit(taps, &self.path, x, h)
    }
}

/// `UpBlock2D` or `CrossAttnUpBlock2D`: each resnet takes the hidden states concatenated with
/// the next skip state (last in, first out), then an optional upsampler.
pub struct UpBlock {
    path: String,
    resnets: Vec<ResnetBlock2D>,
    /// Empty for UpBlock2D.
    attentions: Vec<Transformer2DModel>,
    upsampler: Option<Upsample2D>,
}

impl UpBlock {
    pub fn load(s: &Scope, z: &BlockSizes, o: &BlockOptions, add_upsample: bool) -> Result<Self> {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for i in 0..z.layers {
            // diffusers: the last resnet's skip comes from the level above (in_channels).
            let skip = if i == z.layers - 1 { z.in_channels } else { z.out_channels };
            let cin = if i == 0 { z.prev_channels } else { z.out_channels };
            resnets.push(ResnetBlock2D::load(&s.pp("resnets").pp(i), &o.resnet(cin + skip, z.out_channels, 1.0))?);
            if let Some((heads, tl)) = z.attention {
                attentions.push(Transformer2DModel::load(&s.pp("attentions").pp(i), &o.transformer(z.out_channels, heads, tl))?);
            }
        }
        let upsampler = if add_upsample { Some(Upsample2D::load(&s.pp("upsamplers").pp(0), z.out_channels)?) } else { None };
        Ok(UpBlock { path: s.path().to_string(), resnets, attentions, upsampler })
    }

    /// Skip states this block consumes.
    pub fn num_skips(&self) -> usize {
        self.resnets.len()
    }

    pub fn tap_names(&self, out: &mut Vec<String>) {
        for (i, r) in self.resnets.iter().enumerate() {
            out.push(r.path().to_string());
            if let Some(a) = self.attentions.get(i) {
                a.tap_names(out);
                out.push(a.path().to_string());
            }
        }
        if let Some(u) = &self.upsampler {
            out.push(u.path().to_string());
        }
        out.push(self.path.clone());
    }

    /// x: [B, Cprev, H, W], skips: this block's skip states in down-path order (the last is
    /// used first) -> [B, C, H', W'], upsampled to `upsample_size` when given, else 2x (if the
    /// block has an upsampler). None: stopped early.
    pub fn forward(
        &self,
        x: &Tensor,
        skips: &[Tensor],
        cond: &Cond,
        upsample_size: Option<(usize, usize)>,
        taps: &mut Taps,
    ) -> Result<Option<Tensor>> {
        let _r = crate::trace::range(&self.path);
        if skips.len() != self.resnets.len() {
            return Err(crate::Error::Internal(format!("{}: {} skip states for {} resnets", self.path, skips.len(), self.resnets.len())));
        }
        let mut h = x.clone();
        for (i, (r, skip)) in self.resnets.iter().zip(skips.iter().rev()).enumerate() {
            // [B, C1, H, W] ++ [B, C2, H, W] -> [B, C1 + C2, H, W]
            let joined = ops::layout::cat(&[&h, skip], 1)?;
            h = step!(resnet_then_attention(r, self.attentions.get(i), joined, cond, taps));
        }
        if let Some(u) = &self.upsampler {
            let out = u.forward(&h, upsample_size)?;
            h = step!(visit(taps, u.path(), &h, out));
        }
        visit(taps, &self.path, x, h)
    }
}
