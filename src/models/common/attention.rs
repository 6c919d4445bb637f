//! diffusers' `Attention` (to_q, to_k, to_v, to_out.0) with the math of its default
//! `AttnProcessor2_0`, and the transformer's `FeedForward` with GEGLU (diffusers 0.42
//! `models/attention_processor.py`, `models/attention.py`, `models/activations.py`).
//!
//! Legend: B = batch, N = query tokens, S = key/value tokens (text tokens for cross-attention),
//! C = query width, Cc = context width, H = heads, D = head dim, H * D = inner width.
//! Tokens stay token-major ([B, N, H*D] reshaped for free to [B, N, H, D]), which is what
//! `ops::attention` takes: no permutes. Scores and softmax are f32 whatever the storage dtype,
//! which covers SD 2.1's `upcast_attention` and the VAE's `upcast_softmax`.

use crate::models::common::layers::{GroupNorm, Linear};
use crate::models::weights::Scope;
use crate::ops;
use crate::tensor::Tensor;
use crate::Result;

/// Multi-head attention: softmax(q k^T / sqrt(D)) v, then the output projection.
pub struct Attention {
    path: String,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    /// `to_out.0` (`to_out.1` is dropout).
    to_out: Linear,
    heads: usize,
    head_dim: usize,
    /// The VAE's mid-block attention normalises its input first (`group_norm`).
    group_norm: Option<GroupNorm>,
}

impl Attention {
    /// A transformer block's attention: query width `dim`, `heads` x `head_dim`, context width
    /// `context_dim` (= `dim` for self-attention); q/k/v without bias (`attention_bias` is
    /// false in every SD config), to_out with bias.
    pub fn load(s: &Scope, dim: usize, context_dim: usize, heads: usize, head_dim: usize) -> Result<Self> {
        let inner = heads * head_dim;
        Ok(Attention {
            path: s.path().to_string(),
            to_q: Linear::load(&s.pp("to_q"), dim, inner, false)?,
            to_k: Linear::load(&s.pp("to_k"), context_dim, inner, false)?,
            to_v: Linear::load(&s.pp("to_v"), context_dim, inner, false)?,
            to_out: Linear::load(&s.pp("to_out").pp(0), inner, dim, true)?,
            heads,
            head_dim,
            group_norm: None,
        })
    }

    /// The VAE mid block's attention over pixels: GroupNorm(groups, eps), one head of dim C,
    /// q/k/v with bias, a residual connection and rescale factor 1 (diffusers'
    /// `UNetMidBlock2D` with `attention_head_dim = C`). Folders saved before diffusers 0.14
    /// name the projections `query`, `key`, `value`, `proj_attn`; diffusers renames them when
    /// loading (`modeling_utils.py` `_convert_deprecated_attention_blocks`), and so do we.
    pub fn load_spatial(s: &Scope, channels: usize, groups: usize, eps: f64) -> Result<Self> {
        let legacy = !s.contains("to_q.weight") && s.contains("query.weight");
        let name = |new: &str, old: &str| if legacy { s.pp(old) } else { s.pp(new) };
        Ok(Attention {
            path: s.path().to_string(),
            to_q: Linear::load(&name("to_q", "query"), channels, channels, true)?,
            to_k: Linear::load(&name("to_k", "key"), channels, channels, true)?,
            to_v: Linear::load(&name("to_v", "value"), channels, channels, true)?,
            to_out: Linear::load(&if legacy { s.pp("proj_attn") } else { s.pp("to_out").pp(0) }, channels, channels, true)?,
            heads: 1,
            head_dim: channels,
            group_norm: Some(GroupNorm::load(&s.pp("group_norm"), channels, groups, eps)?),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// x: [B, N, C], context: [B, S, Cc] (None: self-attention) -> [B, N, C]
    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let _r = crate::trace::range(&self.path);
        let (b, n, _) = x.dims3("attention input")?;
        let ctx = context.unwrap_or(x);
        let s = ctx.dims3("attention context")?.1;
        let (h, d) = (self.heads, self.head_dim);
        // 1. projections, [B, N|S, H*D] viewed as [B, N|S, H, D]
        let q = self.to_q.forward(x)?.reshape([b, n, h, d])?;
        let k = self.to_k.forward(ctx)?.reshape([b, s, h, d])?;
        let v = self.to_v.forward(ctx)?.reshape([b, s, h, d])?;
        // 2. softmax(q k^T * D^-0.5) v (SDPA's default scale)
        let o = ops::attention::attention(&q, &k, &v, (d as f32).powf(-0.5), false)?;
        // 3. to_out.0
        self.to_out.forward(&o.reshape([b, n, h * d])?)
    }

    /// The VAE's attention over the pixels of x: [B, C, H, W] -> [B, C, H, W], the input added
    /// back (`residual_connection`).
    pub fn forward_spatial(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, hh, ww) = x.dims4("attention input")?;
        let normed = match &self.group_norm {
            Some(g) => g.forward(x, false)?,
            None => x.clone(),
        };
        let tokens = ops::layout::nchw_to_tokens(&normed)?;
        let out = self.forward(&tokens, None)?;
        ops::add(&ops::layout::tokens_to_nchw(&out, hh, ww)?, x)
    }
}

/// `FeedForward` with GEGLU: net.0.proj (C -> 2F), h * gelu(gate), net.2 (F -> C); F = 4C.
pub struct FeedForward {
    proj: Linear,
    out: Linear,
}

impl FeedForward {
    pub fn load(s: &Scope, dim: usize) -> Result<Self> {
        let inner = 4 * dim;
        Ok(FeedForward {
            proj: Linear::load(&s.pp("net").pp(0).pp("proj"), dim, 2 * inner, true)?,
            out: Linear::load(&s.pp("net").pp(2), inner, dim, true)?,
        })
    }

    /// x: [B, N, C] -> [B, N, C]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.out.forward(&ops::geglu(&self.proj.forward(x)?)?)
    }
}
