//! `Transformer2DModel` (continuous input) and its `BasicTransformerBlock`s, as the SD U-Net
//! builds them (diffusers 0.42 `models/transformers/transformer_2d.py`, `models/attention.py`):
//! GroupNorm (eps 1e-6), proj_in, blocks of self-attention, cross-attention and GEGLU
//! feed-forward (LayerNorms with eps 1e-5 before each, residuals after), proj_out, plus the input.
//!
//! Legend: B = batch, C = channels, H, W = spatial size, N = H*W tokens, S = text tokens,
//! Cc = cross_attention_dim. SD 1 has 1x1-conv proj_in/proj_out on NCHW maps, SD 2 linear ones
//! on tokens (`use_linear_projection`); a 1x1 conv is the same product as a linear layer on
//! tokens, so both run as: norm -> NCHW to tokens -> linear -> blocks -> linear -> tokens to NCHW
//! (diffusers transposes after the conv instead; the sums are the same).

use crate::models::common::attention::{Attention, FeedForward};
use crate::models::common::layers::{GroupNorm, LayerNorm, Linear};
use crate::models::common::visit::{step, visit};
use crate::models::taps::Taps;
use crate::models::weights::Scope;
use crate::ops;
use crate::tensor::Tensor;
use crate::Result;

/// LayerNorm eps of the transformer blocks (`norm_eps` of Transformer2DModel, which the U-Net
/// does not pass: its default).
const LAYER_NORM_EPS: f64 = 1e-5;
/// GroupNorm eps of Transformer2DModel's input norm (hard-coded in diffusers).
const GROUP_NORM_EPS: f64 = 1e-6;

/// norm1 -> self-attention -> + x; norm2 -> cross-attention -> + x; norm3 -> GEGLU FF -> + x.
pub struct BasicTransformerBlock {
    path: String,
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl BasicTransformerBlock {
    pub fn load(s: &Scope, dim: usize, heads: usize, head_dim: usize, cross_attention_dim: usize) -> Result<Self> {
        Ok(BasicTransformerBlock {
            path: s.path().to_string(),
            norm1: LayerNorm::load(&s.pp("norm1"), dim, LAYER_NORM_EPS)?,
            attn1: Attention::load(&s.pp("attn1"), dim, dim, heads, head_dim)?,
            norm2: LayerNorm::load(&s.pp("norm2"), dim, LAYER_NORM_EPS)?,
            attn2: Attention::load(&s.pp("attn2"), dim, cross_attention_dim, heads, head_dim)?,
            norm3: LayerNorm::load(&s.pp("norm3"), dim, LAYER_NORM_EPS)?,
            ff: FeedForward::load(&s.pp("ff"), dim)?,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// x: [B, N, C], context: [B, S, Cc] -> [B, N, C]
    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let _r = crate::trace::range(&self.path);
        let x = ops::add(&self.attn1.forward(&self.norm1.forward(x)?, None)?, x)?;
        let x = ops::add(&self.attn2.forward(&self.norm2.forward(&x)?, Some(context))?, &x)?;
        ops::add(&self.ff.forward(&self.norm3.forward(&x)?)?, &x)
    }
}

/// The sizes of one Transformer2DModel.
#[derive(Debug, Clone, Copy)]
pub struct TransformerConfig {
    pub channels: usize,
    pub heads: usize,
    pub layers: usize,
    pub cross_attention_dim: usize,
    pub groups: usize,
    pub use_linear_projection: bool,
}

pub struct Transformer2DModel {
    path: String,
    norm: GroupNorm,
    proj_in: Linear,
    transformer_blocks: Vec<BasicTransformerBlock>,
    proj_out: Linear,
}

impl Transformer2DModel {
    pub fn load(s: &Scope, c: &TransformerConfig) -> Result<Self> {
        let head_dim = c.channels / c.heads;
        let inner = c.heads * head_dim;
        let (proj_in, proj_out) = if c.use_linear_projection {
            (Linear::load(&s.pp("proj_in"), c.channels, inner, true)?, Linear::load(&s.pp("proj_out"), inner, c.channels, true)?)
        } else {
            (Linear::load_conv1x1(&s.pp("proj_in"), c.channels, inner)?, Linear::load_conv1x1(&s.pp("proj_out"), inner, c.channels)?)
        };
        let blocks = s.pp("transformer_blocks");
        Ok(Transformer2DModel {
            path: s.path().to_string(),
            norm: GroupNorm::load(&s.pp("norm"), c.channels, c.groups, GROUP_NORM_EPS)?,
            proj_in,
            transformer_blocks: (0..c.layers)
                .map(|i| BasicTransformerBlock::load(&blocks.pp(i), inner, c.heads, head_dim, c.cross_attention_dim))
                .collect::<Result<_>>()?,
            proj_out,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Tap paths inside this module, in execution order.
    pub fn tap_names(&self, out: &mut Vec<String>) {
        out.extend(self.transformer_blocks.iter().map(|b| b.path.clone()));
    }

    /// x: [B, C, H, W], context: [B, S, Cc] -> [B, C, H, W] (None: the pass stopped at a tap
    /// inside). The transformer blocks are tappable (token-major values, [B, N, C]).
    pub fn forward(&self, x: &Tensor, context: &Tensor, taps: &mut Taps) -> Result<Option<Tensor>> {
        let _r = crate::trace::range(&self.path);
        let (_, _, h, w) = x.dims4("Transformer2DModel")?;
        // 1. input: GroupNorm, [B, C, H, W] -> [B, N, C], proj_in
        let normed = self.norm.forward(x, false)?;
        let mut t = self.proj_in.forward(&ops::layout::nchw_to_tokens(&normed)?)?;
        // 2. blocks
        for block in &self.transformer_blocks {
            let out = block.forward(&t, context)?;
            t = step!(visit(taps, &block.path, &t, out));
        }
        // 3. output: proj_out, [B, N, C] -> [B, C, H, W], plus the input
        let out = ops::layout::tokens_to_nchw(&self.proj_out.forward(&t)?, h, w)?;
        Ok(Some(ops::add(&out, x)?))
    }
}
