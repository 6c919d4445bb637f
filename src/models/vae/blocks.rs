//! The VAE's blocks (diffusers 0.42 `models/unets/unet_2d_blocks.py`): `DownEncoderBlock2D`,
//! `UNetMidBlock2D` (resnet, attention over pixels, resnet) and `UpDecoderBlock2D`, built from
//! the U-Net's resnet, down/upsampler and attention modules without a time embedding. Every
//! resnet uses eps 1e-6 and the config's group count.
//!
//! Legend: B = batch, C = channels, H, W = spatial size. Each block visits its resnets,
//! attention and down/upsampler by module path as they finish, then itself.

use crate::models::taps::Taps;
use crate::models::common::attention::Attention;
use crate::models::common::resnet::{Downsample2D, ResnetBlock2D, ResnetConfig, TimeNorm, Upsample2D};
use crate::models::common::visit::{step, visit};
use crate::models::weights::Scope;
use crate::tensor::Tensor;
use crate::Result;

/// GroupNorm eps of every VAE norm (hard-coded in diffusers' Encoder/Decoder).
pub const EPS: f64 = 1e-6;

fn resnet(s: &Scope, cin: usize, cout: usize, groups: usize) -> Result<ResnetBlock2D> {
    let c = ResnetConfig {
        in_channels: cin,
        out_channels: cout,
        temb_channels: 0,
        groups,
        eps: EPS,
        time_norm: TimeNorm::None,
        output_scale_factor: 1.0,
    };
    ResnetBlock2D::load(s, &c)
}

/// Runs resnets in sequence, visiting each.
fn resnets_forward(resnets: &[ResnetBlock2D], x: &Tensor, taps: &mut Taps) -> Result<Option<Tensor>> {
    let mut h = x.clone();
    for r in resnets {
        let out = r.forward(&h, None)?;
        h = step!(visit(taps, r.path(), &h, out));
    }
    Ok(Some(h))
}

/// Resnets, then a stride-2 conv after the asymmetric (0, 1, 0, 1) pad (all but the last level).
pub struct DownEncoderBlock2D {
    path: String,
    resnets: Vec<ResnetBlock2D>,
    downsampler: Option<Downsample2D>,
}

impl DownEncoderBlock2D {
    pub fn load(s: &Scope, layers: usize, cin: usize, cout: usize, groups: usize, add_downsample: bool) -> Result<Self> {
        let resnets = (0..layers)
            .map(|i| resnet(&s.pp("resnets").pp(i), if i == 0 { cin } else { cout }, cout, groups))
            .collect::<Result<_>>()?;
        let downsampler = if add_downsample { Some(Downsample2D::load(&s.pp("downsamplers").pp(0), cout, 0)?) } else { None };
        Ok(DownEncoderBlock2D { path: s.path().to_string(), resnets, downsampler })
    }

    pub fn tap_names(&self, out: &mut Vec<String>) {
        out.extend(self.resnets.iter().map(|r| r.path().to_string()));
        out.extend(self.downsampler.iter().map(|d| d.path().to_string()));
        out.push(self.path.clone());
    }

    /// x: [B, Cin, H, W] -> [B, C, H', W'] (H' = H / 2 with a downsampler); None: stopped.
    pub fn forward(&self, x: &Tensor, taps: &mut Taps) -> Result<Option<Tensor>> {
        let _r = crate::trace::range(&self.path);
        let mut h = step!(resnets_forward(&self.resnets, x, taps));
        if let Some(d) = &self.downsampler {
            let out = d.forward(&h)?;
            h = step!(visit(taps, d.path(), &h, out));
        }
        visit(taps, &self.path, x, h)
    }
}

/// `UNetMidBlock2D` as the VAE builds it: resnet, attention (GroupNorm, one head of dim C over
/// the H*W pixels, residual), resnet; without the attention when `mid_block_add_attention` is
/// false.
pub struct UNetMidBlock2D {
    path: String,
    resnets: Vec<ResnetBlock2D>,
    attention: Option<Attention>,
}

impl UNetMidBlock2D {
    pub fn load(s: &Scope, channels: usize, groups: usize, add_attention: bool) -> Result<Self> {
        let attention =
            if add_attention { Some(Attention::load_spatial(&s.pp("attentions").pp(0), channels, groups, EPS)?) } else { None };
        Ok(UNetMidBlock2D {
            path: s.path().to_string(),
            resnets: vec![
                resnet(&s.pp("resnets").pp(0), channels, channels, groups)?,
                resnet(&s.pp("resnets").pp(1), channels, channels, groups)?,
            ],
            attention,
        })
    }

    pub fn tap_names(&self, out: &mut Vec<String>) {
        out.push(self.resnets[0].path().to_string());
        out.extend(self.attention.iter().map(|a| a.path().to_string()));
        out.push(self.resnets[1].path().to_string());
        out.push(self.path.clone());
    }

    /// x: [B, C, H, W] -> [B, C, H, W]; None: stopped.
    pub fn forward(&self, x: &Tensor, taps: &mut Taps) -> Result<Option<Tensor>> {
        let _r = crate::trace::range(&self.path);
        let out = self.resnets[0].forward(x, None)?;
        let mut h = step!(visit(taps, self.resnets[0].path(), x, out));
        if let Some(a) = &self.attention {
            let _a = crate::trace::range(a.path());
            let out = a.forward_spatial(&h)?;
            h = step!(visit(taps, a.path(), &h, out));
        }
        let out = self.resnets[1].forward(&h, None)?;
        h = step!(visit(taps, self.resnets[1].path(), &h, out));
        visit(taps, &self.path, x, h)
    }
}

/// layers_per_block + 1 resnets, then a 2x nearest upsample and conv (all but the last level).
pub struct UpDecoderBlock2D {
    path: String,
    resnets: Vec<ResnetBlock2D>,
    upsampler: Option<Upsample2D>,
}

impl UpDecoderBlock2D {
    pub fn load(s: &Scope, layers: usize, cin: usize, cout: usize, groups: usize, add_upsample: bool) -> Result<Self> {
        let resnets = (0..layers)
            .map(|i| resnet(&s.pp("resnets").pp(i), if i == 0 { cin } else { cout }, cout, groups))
            .collect::<Result<_>>()?;
        let upsampler = if add_upsample { Some(Upsample2D::load(&s.pp("upsamplers").pp(0), cout)?) } else { None };
        Ok(UpDecoderBlock2D { path: s.path().to_string(), resnets, upsampler })
    }

    pub fn tap_names(&self, out: &mut Vec<String>) {
        out.extend(self.resnets.iter().map(|r| r.path().to_string()));
        out.extend(self.upsampler.iter().map(|u| u.path().to_string()));
        out.push(self.path.clone());
    }

    /// x: [B, Cin, H, W] -> [B, C, 2H, 2W] (H, W without an upsampler); None: stopped.
    pub fn forward(&self, x: &Tensor, taps: &mut Taps) -> Result<Option<Tensor>> {
        let _r = crate::trace::range(&self.path);
        let mut h = step!(resnets_forward(&self.resnets, x, taps));
        if let Some(u) = &self.upsampler {
            let out = u.forward(&h, None)?;
            h = step!(visit(taps, u.path(), &h, out));
        }
        visit(taps, &self.path, x, h)
    }
}
