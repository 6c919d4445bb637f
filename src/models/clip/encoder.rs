//! CLIPEncoderLayer, shared by the text and the vision tower (transformers 5.25
//! `models/clip/modeling_clip.py`): pre-norm, h + attn(ln1(h)), then h + mlp(ln2(h)). The text
//! tower's attention is causal, the vision tower's is not; nothing else differs.
//!
//! Legend: B = batch, S = tokens, D = hidden_size, H = heads, Dh = D / H, I = intermediate_size.

use super::config::HiddenAct;
use crate::models::common::layers::{LayerNorm, Linear};
use crate::models::weights::Scope;
use crate::ops::{self, Unary};
use crate::tensor::Tensor;
use crate::Result;

const OP: &str = "clip_encoder";

/// The sizes of one tower's encoder layers.
#[derive(Debug, Clone, Copy)]
pub struct EncoderDims {
    /// D
    pub hidden: usize,
    /// I
    pub intermediate: usize,
    /// H
    pub heads: usize,
    pub eps: f64,
    pub act: HiddenAct,
    /// Causal self-attention (the text tower).
    pub causal: bool,
}

/// CLIPAttention: q/k/v/out projections [D, D], softmax(q k^T / sqrt(Dh)) v, causal or not.
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
    head_dim: usize,
    causal: bool,
}

impl Attention {
    fn load(w: &Scope, dims: &EncoderDims) -> Result<Attention> {
        let d = dims.hidden;
        Ok(Attention {
            q_proj: Linear::load(&w.pp("q_proj"), d, d, true)?,
            k_proj: Linear::load(&w.pp("k_proj"), d, d, true)?,
            v_proj: Linear::load(&w.pp("v_proj"), d, d, true)?,
            out_proj: Linear::load(&w.pp("out_proj"), d, d, true)?,
            heads: dims.heads,
            head_dim: d / dims.heads,
            causal: dims.causal,
        })
    }

    /// x: [B, S, D] -> [B, S, D]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, s, d) = x.dims3(OP)?;
        let split = |t: Tensor| t.reshape([b, s, self.heads, self.head_dim]);
        let q = split(self.q_proj.forward(x)?)?;
        let k = split(self.k_proj.forward(x)?)?;
        let v = split(self.v_proj.forward(x)?)?;
        // transformers multiplies q k^T by head_dim^-0.5 (and adds the causal mask in the text
        // tower) before the softmax (`eager_attention_forward`; SDPA gives the same).
        let scale = (self.head_dim as f32).powf(-0.5);
        let o = ops::attention::attention(&q, &k, &v, scale, self.causal)?;
        self.out_proj.forward(&o.reshape([b, s, d])?)
    }
}

/// CLIPMLP: fc1 [I, D] -> act -> fc2 [D, I].
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    act: Unary,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward(x)?;
        self.fc2.forward(&ops::unary(&h, self.act)?)
    }
}

/// CLIPEncoderLayer (pre-norm): h + attn(ln1(h)), then h + mlp(ln2(h)).
pub struct EncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: Attention,
    layer_norm2: LayerNorm,
    mlp: Mlp,
}

impl EncoderLayer {
    /// The layer under `w` (`encoder.layers.i`).
    pub fn load(w: &Scope, dims: &EncoderDims) -> Result<EncoderLayer> {
        let (d, i, eps) = (dims.hidden, dims.intermediate, dims.eps);
        Ok(EncoderLayer {
            layer_norm1: LayerNorm::load(&w.pp("layer_norm1"), d, eps)?,
            self_attn: Attention::load(&w.pp("self_attn"), dims)?,
            layer_norm2: LayerNorm::load(&w.pp("layer_norm2"), d, eps)?,
            mlp: Mlp {
                fc1: Linear::load(&w.pp("mlp").pp("fc1"), d, i, true)?,
                fc2: Linear::load(&w.pp("mlp").pp("fc2"), i, d, true)?,
                act: dims.act.unary(),
            },
        })
    }

    /// The `layers` layers of a tower: `encoder.layers.0 ..`.
    pub fn load_all(w: &Scope, layers: usize, dims: &EncoderDims) -> Result<Vec<EncoderLayer>> {
        (0..layers)
            .map(|i| EncoderLayer::load(&w.pp("encoder").pp("layers").pp(i), dims))
            .collect()
    }

    /// h: [B, S, D] -> [B, S, D]
    pub fn forward(&self, h: &Tensor) -> Result<Tensor> {
        let a = self.self_attn.forward(&self.layer_norm1.forward(h)?)?;
        let h = ops::add(h, &a)?;
        let m = self.mlp.forward(&self.layer_norm2.forward(&h)?)?;
        ops::add(&h, &m)
    }
}
