//! CLIPVisionTransformer, the vision tower of CLIP (a ViT), as transformers 5.25 computes it
//! (`models/clip/modeling_clip.py`): a patch embedding (a P x P conv with stride P, no bias), a
//! learned class token prepended, learned position embeddings added, `pre_layrnorm` (sic),
//! pre-norm encoder layers with full (not causal) self-attention, and the pooled output:
//! `post_layernorm` of the class token.
//!
//! Legend: B = batch, C = num_channels (3), R = image_size, P = patch_size, G = R / P,
//! T = 1 + G^2 tokens, Dv = hidden_size, L = num_hidden_layers.
//!
//! `hidden_states.N` are numbered as transformers does: 0 = after `pre_layrnorm` (the encoder's
//! input), i = the output of encoder layer i (1-based); `last_hidden_state` = hidden_states.L
//! (no norm). Positions are not interpolated: the input must be R x R.

use super::encoder::{EncoderDims, EncoderLayer};
use super::model_config::ClipVisionConfig;
use crate::models::common::layers::LayerNorm;
use crate::models::weights::Scope;
use crate::ops::{self, conv::Conv2dParams};
use crate::tensor::Tensor;
use crate::{ensure_op, Result};

const OP: &str = "clip_vision_model";

/// The checkpoint key of the buffer that is allowed to go unused (a non-persistent buffer in
/// transformers, saved by older versions).
const POSITION_IDS: &str = "embeddings.position_ids";

/// What `forward` returns.
#[derive(Debug, Clone)]
pub struct ClipVisionOutput {
    /// [B, T, Dv], the last layer's output.
    pub last_hidden_state: Tensor,
    /// [B, Dv]: `post_layernorm` of the class token.
    pub pooler_output: Tensor,
    /// L + 1 tensors [B, T, Dv] when asked for, else empty.
    pub hidden_states: Vec<Tensor>,
}

pub struct ClipVisionModel {
    config: ClipVisionConfig,
    /// [Dv, C, P, P], no bias.
    patch_embedding: Tensor,
    patch: Conv2dParams,
    /// [1, 1, Dv]
    class_embedding: Tensor,
    /// [T, Dv]
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    layers: Vec<EncoderLayer>,
    post_layernorm: LayerNorm,
}

impl ClipVisionModel {
    /// The tower of `config` from the tensors under `root` (`vision_model` in a CLIPModel); the
    /// caller checks that nothing else is left unused (`position_ids_key` may be).
    pub fn from_scope(config: ClipVisionConfig, root: &Scope) -> Result<ClipVisionModel> {
        config.validate()?;
        let (d, c, p, t) = (
            config.hidden_size,
            config.num_channels,
            config.patch_size,
            config.tokens(),
        );
        let emb = root.pp("embeddings");
        let patch_embedding = emb.get("patch_embedding.weight", &[d, c, p, p])?;
        let class_embedding = emb.get("class_embedding", &[d])?.reshape([1, 1, d])?;
        let position_embedding = emb.get("position_embedding.weight", &[t, d])?;
        let eps = config.layer_norm_eps;
        let dims = EncoderDims {
            hidden: d,
            intermediate: config.intermediate_size,
            heads: config.num_attention_heads,
            eps,
            act: config.act()?,
            causal: false,
        };
        Ok(ClipVisionModel {
            patch_embedding,
            patch: Conv2dParams {
                stride: (p, p),
                padding: [0; 4],
            },
            class_embedding,
            position_embedding,
            pre_layrnorm: LayerNorm::load(&root.pp("pre_layrnorm"), d, eps)?,
            layers: EncoderLayer::load_all(root, config.num_hidden_layers, &dims)?,
            post_layernorm: LayerNorm::load(&root.pp("post_layernorm"), d, eps)?,
            config,
        })
    }

    /// The checkpoint key of the `position_ids` buffer under `root`, allowed to go unused.
    pub fn position_ids_key(root: &Scope) -> String {
        root.key(POSITION_IDS)
    }

    pub fn config(&self) -> &ClipVisionConfig {
        &self.config
    }

    /// pixel_values: [B, C, R, R] (normalized as CLIPImageProcessor does) -> the last hidden
    /// state, the pooled output, and with `output_hidden_states` the L + 1 hidden states.
    pub fn forward(
        &self,
        pixel_values: &Tensor,
        output_hidden_states: bool,
    ) -> Result<ClipVisionOutput> {
        let (b, c, h, w) = pixel_values.dims4(OP)?;
        let (cc, r) = (self.config.num_channels, self.config.image_size);
        ensure_op!(
            c == cc && h == r && w == r,
            OP,
            "pixel_values {} must be [B, {cc}, {r}, {r}] (num_channels, image_size of the vision config)",
            pixel_values.shape()
        );
        let d = self.config.hidden_size;
        let x = ops::to_dtype(
            &pixel_values.to_device(&self.patch_embedding.device())?,
            self.patch_embedding.dtype(),
        )?;
        // 1. embeddings: [class token, patches] + positions  [B, T, Dv]
        let h = {
            let _r = crate::trace::range("vision.embeddings");
            // [B, Dv, G, G] -> [B, G^2, Dv]
            let patches = ops::layout::nchw_to_tokens(&ops::conv::conv2d(
                &x,
                &self.patch_embedding,
                None,
                &self.patch,
            )?)?;
            let cls = ops::cat(&vec![&self.class_embedding; b], 0)?; // [B, 1, Dv]
            let tokens = ops::cat(&[&cls, &patches], 1)?;
            ops::add(&tokens, &self.position_embedding)?
        };
        // 2. pre_layrnorm, then the encoder layers (full attention)
        let mut h = self.pre_layrnorm.forward(&h)?;
        let mut hidden_states = Vec::new();
        if output_hidden_states {
            hidden_states.push(h.clone());
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let _r = crate::trace::range(&format!("vision.encoder.layers.{i}"));
            h = layer.forward(&h)?;
            if output_hidden_states {
                hidden_states.push(h.clone());
            }
        }
        // 3. pooled: post_layernorm of the class token  [B, Dv]
        let cls = ops::layout::narrow(&h, 1, 0, 1)?.reshape([b, d])?;
        let pooler_output = self.post_layernorm.forward(&cls)?;
        Ok(ClipVisionOutput {
            last_hidden_state: h,
            pooler_output,
            hidden_states,
        })
    }
}
