//! DiT's transformer block (diffusers `BasicTransformerBlock` with `norm_type="ada_norm_zero"`,
//! facebookresearch/DiT `DiTBlock`), its final layer, and unpatchify.
//!
//! Legend: B = batch, T = tokens, D = width, H = heads, Dh = head dim (D = H*Dh), p = patch,
//! C = output channels. Upstream lines: diffusers v0.42.1 `src/diffusers/models/attention.py`
//! (`BasicTransformerBlock.forward`, L960-1080), `normalization.py` (`AdaLayerNormZero`,
//! L130-170), `transformers/dit_transformer_2d.py` (output, L207-221).

use super::embeddings::CombinedTimestepLabelEmbeddings;
use crate::models::weights::Scope;
use crate::models::common::layers::Linear;
use crate::ops;
use crate::tensor::Tensor;
use crate::Result;

/// eps of the affine-free LayerNorms of adaLN-Zero (`AdaLayerNormZero.norm`, normalization.py
/// L149) and of the output (`norm_out`, dit_transformer_2d.py L142).
pub const ADA_NORM_EPS: f32 = 1e-6;

/// m: [B, k*D] -> k tensors [B, 1, D] (torch's `chunk(k, dim=1)`, then `[:, None]` to
/// broadcast over the tokens).
fn chunks(m: &Tensor, k: usize, d: usize) -> Result<Vec<Tensor>> {
    let b = m.dims()[0];
    (0..k).map(|i| ops::layout::narrow(m, 1, i * d, d)?.reshape([b, 1, d])).collect()
}

/// x: [B, T, D], shift, scale: [B, 1, D] -> x * (1 + scale) + shift (DiT's `modulate`).
fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let one_plus = ops::affine(scale, 1.0, 1.0)?;
    ops::add(&ops::mul(x, &one_plus)?, shift)
}

/// `AdaLayerNormZero` (normalization.py L130-170): the conditioning embedder of this block and
/// the linear map of SiLU(conditioning) to the six modulation vectors.
pub struct AdaLayerNormZero {
    pub emb: CombinedTimestepLabelEmbeddings,
    /// linear: D -> 6D
    linear: Linear,
    dim: usize,
}

/// The six [B, 1, D] vectors of one block, in diffusers' chunk order (normalization.py L168).
pub struct Modulation {
    pub shift_msa: Tensor,
    pub scale_msa: Tensor,
    pub gate_msa: Tensor,
    pub shift_mlp: Tensor,
    pub scale_mlp: Tensor,
    pub gate_mlp: Tensor,
}

impl AdaLayerNormZero {
    pub fn load(s: &Scope, dim: usize, classes: usize) -> Result<Self> {
        Ok(AdaLayerNormZero {
            emb: CombinedTimestepLabelEmbeddings::load(&s.pp("emb"), dim, classes)?,
            linear: Linear::load(&s.pp("linear"), dim, 6 * dim, true)?,
            dim,
        })
    }

    /// cond: [B, D] (this block's `emb` output) -> the six modulation vectors.
    pub fn modulation(&self, cond: &Tensor) -> Result<Modulation> {
        let m = self.linear.forward(&ops::silu(cond)?)?;
        let mut c = chunks(&m, 6, self.dim)?.into_iter();
        let mut next = || c.next().expect("six chunks");
        Ok(Modulation { shift_msa: next(), scale_msa: next(), gate_msa: next(), shift_mlp: next(), scale_mlp: next(), gate_mlp: next() })
    }
}

/// Self-attention `attn1` (diffusers `Attention` with AttnProcessor2_0): to_q, to_k, to_v
/// (bias when `attention_bias`), softmax(q k^T / sqrt(Dh)) v per head, to_out.0 (always biased).
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    pub fn load(s: &Scope, heads: usize, head_dim: usize, bias: bool) -> Result<Self> {
        let d = heads * head_dim;
        Ok(Attention {
            to_q: Linear::load(&s.pp("to_q"), d, d, bias)?,
            to_k: Linear::load(&s.pp("to_k"), d, d, bias)?,
            to_v: Linear::load(&s.pp("to_v"), d, d, bias)?,
            to_out: Linear::load(&s.pp("to_out").pp(0), d, d, true)?,
            heads,
            head_dim,
        })
    }

    /// x: [B, T, D] -> [B, T, D]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3("dit.attn1")?;
        let heads = [b, t, self.heads, self.head_dim];
        // [B, T, D] -> [B, T, H, Dh]: a free reshape (the attention op is token-major).
        let q = self.to_q.forward(x)?.reshape(heads)?;
        let k = self.to_k.forward(x)?.reshape(heads)?;
        let v = self.to_v.forward(x)?.reshape(heads)?;
        let scale = (1.0 / (self.head_dim as f64).sqrt()) as f32;
        let o = ops::attention::attention(&q, &k, &v, scale, false)?.reshape([b, t, d])?;
        self.to_out.forward(&o)
    }
}

/// `FeedForward` with `activation_fn="gelu-approximate"`: net.0.proj (D -> 4D), tanh GELU,
/// (net.1 is dropout), net.2 (4D -> D).
pub struct FeedForward {
    proj: Linear,
    out: Linear,
}

impl FeedForward {
    pub fn load(s: &Scope, dim: usize) -> Result<Self> {
        let net = s.pp("net");
        Ok(FeedForward { proj: Linear::load(&net.pp(0).pp("proj"), dim, 4 * dim, true)?, out: Linear::load(&net.pp(2), 4 * dim, dim, true)? })
    }

    /// x: [B, T, D] -> [B, T, D]
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.out.forward(&ops::gelu_tanh(&self.proj.forward(x)?)?)
    }
}

/// One adaLN-Zero block: `transformer_blocks.N`.
pub struct BasicTransformerBlock {
    pub norm1: AdaLayerNormZero,
    attn1: Attention,
    /// norm3 weight and bias [D] when `norm_elementwise_affine` (DiT: none).
    norm3: Option<(Tensor, Tensor)>,
    /// `norm_eps` (diffusers' norm3, attention.py L930; the original DiT's norm2 uses 1e-6).
    norm3_eps: f32,
    ff: FeedForward,
}

impl BasicTransformerBlock {
    #[allow(clippy::too_many_arguments)]
    pub fn load(s: &Scope, heads: usize, head_dim: usize, classes: usize, attention_bias: bool, norm_affine: bool, norm_eps: f64) -> Result<Self> {
        let dim = heads * head_dim;
        let norm3 = if norm_affine {
            let n = s.pp("norm3");
            Some((n.get("weight", &[dim])?, n.get("bias", &[dim])?))
        } else {
            None
        };
        Ok(BasicTransformerBlock {
            norm1: AdaLayerNormZero::load(&s.pp("norm1"), dim, classes)?,
            attn1: Attention::load(&s.pp("attn1"), heads, head_dim, attention_bias)?,
            norm3,
            norm3_eps: norm_eps as f32,
            ff: FeedForward::load(&s.pp("ff"), dim)?,
        })
    }

    /// x: [B, T, D], cond: [B, D] (`self.norm1.emb` of the timestep and labels) -> [B, T, D]
    pub fn forward(&self, x: &Tensor, cond: &Tensor) -> Result<Tensor> {
        // 0. adaLN-Zero: six modulation vectors from the conditioning.
        let m = self.norm1.modulation(cond)?;
        // 1. Self-attention on the modulated norm, gated residual (attention.py L976-1018).
        let n = modulate(&ops::norm::layer_norm(x, None, None, ADA_NORM_EPS)?, &m.shift_msa, &m.scale_msa)?;
        let attn = self.attn1.forward(&n)?;
        let x = ops::add(&ops::mul(&attn, &m.gate_msa)?, x)?;
        // 4. Feed-forward on the modulated norm3, gated residual (L1051-1078).
        let (w, b) = match &self.norm3 {
            Some((w, b)) => (Some(w), Some(b)),
            None => (None, None),
        };
        let n = modulate(&ops::norm::layer_norm(&x, w, b, self.norm3_eps)?, &m.shift_mlp, &m.scale_mlp)?;
        let ff = self.ff.forward(&n)?;
        ops::add(&ops::mul(&ff, &m.gate_mlp)?, &x)
    }
}

/// The output of DiTTransformer2DModel (dit_transformer_2d.py L207-211): `norm_out` (no
/// affine, eps 1e-6), shift and scale from `proj_out_1(SiLU(cond))`, `proj_out_2` to one patch
/// of C channels per token. facebookresearch/DiT calls it `final_layer`.
pub struct FinalLayer {
    /// proj_out_1: D -> 2D (shift, scale)
    proj_out_1: Linear,
    /// proj_out_2: D -> p*p*C
    proj_out_2: Linear,
    dim: usize,
}

impl FinalLayer {
    /// `s` is the model root (the diffusers modules are top-level).
    pub fn load(s: &Scope, dim: usize, patch: usize, out_channels: usize) -> Result<Self> {
        Ok(FinalLayer {
            proj_out_1: Linear::load(&s.pp("proj_out_1"), dim, 2 * dim, true)?,
            proj_out_2: Linear::load(&s.pp("proj_out_2"), dim, patch * patch * out_channels, true)?,
            dim,
        })
    }

    /// x: [B, T, D], cond: [B, D] (block 0's conditioning, as diffusers takes it, L208) ->
    /// [B, T, p*p*C]
    pub fn forward(&self, x: &Tensor, cond: &Tensor) -> Result<Tensor> {
        let m = self.proj_out_1.forward(&ops::silu(cond)?)?;
        let c = chunks(&m, 2, self.dim)?;
        let n = modulate(&ops::norm::layer_norm(x, None, None, ADA_NORM_EPS)?, &c[0], &c[1])?;
        self.proj_out_2.forward(&n)
    }
}

/// x: [B, h*w, p*p*C] (per token, the patch in (i, j, c) order) -> [B, C, h*p, w*p]:
/// out[b, c, y*p + i, x*p + j] = x[b, y*w + x, (i*p + j)*C + c] (dit_transformer_2d.py
/// L214-221, with the real h and w where diffusers assumes a square grid).
pub fn unpatchify(x: &Tensor, h: usize, w: usize, p: usize, c: usize) -> Result<Tensor> {
    let b = x.dims()[0];
    let x = x.reshape([b, h, w, p, p, c])?;
    ops::layout::permute(&x, &[0, 5, 1, 3, 2, 4])?.reshape([b, c, h * p, w * p])
}
