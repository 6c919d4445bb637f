//! CLIPTextModel, the text encoder of Stable Diffusion, as transformers 5.23 computes it
//! (`models/clip/modeling_clip.py`): token + learned position embeddings, pre-norm encoder
//! layers (causal self-attention, MLP), a final LayerNorm, and the pooled output at the EOS
//! position.
//!
//! Legend: B = batch, S = tokens (<= max_position_embeddings, 77 in SD), D = hidden_size,
//! H = heads, Dh = D / H, I = intermediate_size, L = num_hidden_layers, V = vocab_size.
//!
//! Weights: `text_encoder/` (config.json + model.safetensors) with the keys of either layout:
//! `text_model.embeddings...` (SD 1.x/2.x folders, transformers < 5.6) or `embeddings...`
//! (transformers >= 5.6 flattened CLIPTextModel and saves without the prefix). The
//! `[text_model.]embeddings.position_ids` buffer some checkpoints carry is the one extra tensor
//! allowed: transformers no longer reads it either (it is a non-persistent buffer rebuilt as
//! 0..P-1), so a checkpoint whose stored copy is damaged (float, off by rounding, as in some SD
//! 1.x fine-tunes) still runs as transformers runs it.
//!
//! `hidden_states.N` are numbered as transformers does: 0 = the embeddings, i = the output of
//! encoder layer i (1-based), L = the last layer's output before `final_layer_norm`.
//!
//! Penultimate layer (SD 2.x, "clip skip"): SD 2.x's original LDM code (`FrozenOpenCLIPEmbedder`
//! with `layer = "penultimate"`) runs OpenCLIP's 24 layers but the last, then `ln_final`.
//! diffusers' converted SD 2.x folders already dropped layer 24 (their config says 23 layers) and
//! run them all then `final_layer_norm`: the same values, with `ClipSkip::none()`. A single-file
//! SD 2.x checkpoint (src/models/ldm.rs) is mapped the diffusers way, layer 24 dropped. For
//! other uses, `encode(ids, ClipSkip { skip: k, final_layer_norm })` returns the output of
//! layer L - k, through `final_layer_norm` or not, as diffusers' `clip_skip = k` does (with the
//! norm) in `StableDiffusionPipeline.encode_prompt`; the skipped layers are not computed.

use super::config::ClipTextConfig;
use super::encoder::{EncoderDims, EncoderLayer};
use crate::models::common::layers::LayerNorm;
use crate::models::weights::{Scope, Weights};
use crate::ops;
use crate::tensor::{DType, Device, Tensor};
use crate::{ensure_op, Error, Result};
use std::path::Path;

const OP: &str = "clip_text_model";

/// The checkpoint key of the buffer that is allowed to go unused.
const POSITION_IDS: &str = "embeddings.position_ids";

/// What `forward` returns.
#[derive(Debug, Clone)]
pub struct ClipTextOutput {
    /// [B, S, D], after `final_layer_norm`.
    pub last_hidden_state: Tensor,
    /// [B, D]: `last_hidden_state` at each row's EOS position (`ClipTextModel::pool_positions`).
    pub pooler_output: Tensor,
    /// L + 1 tensors [B, S, D] when asked for (0 = embeddings, i = after layer i), else empty.
    pub hidden_states: Vec<Tensor>,
}

/// Which hidden state `encode` returns: the output of layer L - `skip`, through
/// `final_layer_norm` or not. `ClipSkip::none()` is `last_hidden_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipSkip {
    /// Final layers not run (0 ..= L).
    pub skip: usize,
    pub final_layer_norm: bool,
}

impl ClipSkip {
    /// All layers, then the final norm.
    pub fn none() -> ClipSkip {
        ClipSkip { skip: 0, final_layer_norm: true }
    }

    /// diffusers' `clip_skip = k`: hidden_states[-(k + 1)] through `final_layer_norm`.
    pub fn diffusers(k: usize) -> ClipSkip {
        ClipSkip { skip: k, final_layer_norm: true }
    }
}

pub struct ClipTextModel {
    config: ClipTextConfig,
    /// [V, D]
    token_embedding: Tensor,
    /// [P, D], P = max_position_embeddings.
    position_embedding: Tensor,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
    /// The EOS id that picks the pooled position.
    eos: i64,
}

impl ClipTextModel {
    /// A `text_encoder/` folder: config.json and model.safetensors (or a variant or shards).
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<ClipTextModel> {
        let config = ClipTextConfig::from_file(&dir.join("config.json"))?;
        let w = Weights::from_dir(dir, None, dtype, device)?;
        ClipTextModel::new(config, &w)
    }

    /// The model of `config` from `w` (keys with or without the `text_model.` prefix). Every
    /// tensor in `w` must be used, except the `position_ids` buffer.
    pub fn new(config: ClipTextConfig, w: &Weights) -> Result<ClipTextModel> {
        let root = if w.contains("text_model.embeddings.token_embedding.weight") { w.root().pp("text_model") } else { w.root() };
        let position_ids = ClipTextModel::position_ids_key(&root);
        let model = ClipTextModel::from_scope(config, &root)?;
        w.finish(|k| k == position_ids)?;
        Ok(model)
    }

    /// The model of `config` from the tensors under `root` (`text_model` in a CLIPModel); the
    /// caller checks that nothing else is left unused.
    pub fn from_scope(config: ClipTextConfig, root: &Scope) -> Result<ClipTextModel> {
        config.validate()?;
        let (d, p, v) = (config.hidden_size, config.max_position_embeddings, config.vocab_size);
        let emb = root.pp("embeddings");
        let token_embedding = emb.get("token_embedding.weight", &[v, d])?;
        let position_embedding = emb.get("position_embedding.weight", &[p, d])?;
        let dims = EncoderDims {
            hidden: d,
            intermediate: config.intermediate_size,
            heads: config.num_attention_heads,
            eps: config.layer_norm_eps,
            act: config.act()?,
            causal: true,
        };
        let layers = EncoderLayer::load_all(root, config.num_hidden_layers, &dims)?;
        let final_layer_norm = LayerNorm::load(&root.pp("final_layer_norm"), d, config.layer_norm_eps)?;
        let eos = config.eos()?;
        Ok(ClipTextModel { config, token_embedding, position_embedding, layers, final_layer_norm, eos })
    }

    /// The checkpoint key of the `position_ids` buffer under `root`, allowed to go unused.
    pub fn position_ids_key(root: &Scope) -> String {
        root.key(POSITION_IDS)
    }

    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    pub fn dtype(&self) -> DType {
        self.token_embedding.dtype()
    }

    pub fn device(&self) -> Device {
        self.token_embedding.device()
    }

    /// input_ids: i64 or i32 [B, S] (on any device) -> last_hidden_state [B, S, D],
    /// pooler_output [B, D], and with `output_hidden_states` the L + 1 hidden states.
    pub fn forward(&self, input_ids: &Tensor, output_hidden_states: bool) -> Result<ClipTextOutput> {
        let ids = self.host_ids(input_ids)?;
        let mut hidden_states = Vec::new();
        let record = if output_hidden_states { Some(&mut hidden_states) } else { None };
        let h = self.run(&ids, self.layers.len(), record)?;
        // 3. final_layer_norm  [B, S, D]
        let last_hidden_state = {
            let _r = crate::trace::range("final_layer_norm");
            self.final_layer_norm.forward(&h)?
        };
        // 4. pooled: the EOS position of each row  [B, D]
        let pooler_output = self.pool(&ids, &last_hidden_state)?;
        Ok(ClipTextOutput { last_hidden_state, pooler_output, hidden_states })
    }

    /// input_ids: [B, S] -> [B, S, D]: the output of layer L - skip (the embeddings when skip =
    /// L), through `final_layer_norm` if asked. Layers past it are not run.
    pub fn encode(&self, input_ids: &Tensor, skip: ClipSkip) -> Result<Tensor> {
        let l = self.layers.len();
        if skip.skip > l {
            return Err(Error::BadOption(format!("clip skip {} is more than the model's {l} layers", skip.skip)));
        }
        let h = self.run(&self.host_ids(input_ids)?, l - skip.skip, None)?;
        if skip.final_layer_norm {
            let _r = crate::trace::range("final_layer_norm");
            self.final_layer_norm.forward(&h)
        } else {
            Ok(h)
        }
    }

    /// Steps 1-2 of CLIPTextModel.forward: embeddings, then the first `layers` encoder layers.
    /// Pushes every hidden state onto `record` when given. ids: i64 [B, S] on the host ->
    /// [B, S, D].
    fn run(&self, ids: &Tensor, layers: usize, mut record: Option<&mut Vec<Tensor>>) -> Result<Tensor> {
        let s = ids.dims()[1];
        // 1. embeddings: token_embedding(ids) + position_embedding(0..S)  [B, S, D]
        let mut h = {
            let _r = crate::trace::range("embeddings");
            let tokens = ops::layout::embedding(&ids.to_device(&self.device())?, &self.token_embedding)?;
            ops::add(&tokens, &self.position_embedding.narrow0(0, s)?)?
        };
        if let Some(r) = record.as_deref_mut() {
            r.push(h.clone());
        }
        // 2. encoder layers, causal self-attention (no padding mask: SD passes none)
        for (i, layer) in self.layers.iter().take(layers).enumerate() {
            let _r = crate::trace::range(&format!("encoder.layers.{i}"));
            h = layer.forward(&h)?;
            if let Some(r) = record.as_deref_mut() {
                r.push(h.clone());
            }
        }
        Ok(h)
    }

    /// input_ids, checked ([B, S], 1 <= S <= max_position_embeddings, i64 or i32), as i64 on
    /// the host (the pooling reads them there; the embedding checks their range).
    fn host_ids(&self, input_ids: &Tensor) -> Result<Tensor> {
        ensure_op!(
            matches!(input_ids.dtype(), DType::I64 | DType::I32),
            OP,
            "input_ids {} must be i64 or i32, got {}",
            input_ids.shape(),
            input_ids.dtype()
        );
        let (b, s) = input_ids.dims2(OP)?;
        let p = self.config.max_position_embeddings;
        ensure_op!(
            b > 0 && s > 0 && s <= p,
            OP,
            "input_ids {} must be [B, S] with B >= 1 and 1 <= S <= max_position_embeddings = {p}",
            input_ids.shape()
        );
        ops::to_dtype(&input_ids.to_device(&Device::Cpu)?, DType::I64)
    }

    /// The pooled position of each row of `ids` ([B, S], host values), as transformers picks it
    /// (modeling_clip.py, `CLIPTextModel.forward`, after `final_layer_norm`):
    /// - `eos_token_id == 2` (the configs written before transformers PR #24773, SD 1.x's and
    ///   2.x's among them): `argmax(input_ids)`, the first largest id, which is the EOS because
    ///   the real EOS, 49407, is the last id of CLIP's vocabulary;
    /// - otherwise the first position holding `eos_token_id` (0 when there is none, as argmax
    ///   over all-false gives).
    ///
    /// <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/clip/modeling_clip.py#L552-L572>,
    /// <https://github.com/huggingface/transformers/pull/24773>
    pub fn pool_positions(&self, ids: &[i64], b: usize, s: usize) -> Vec<usize> {
        (0..b)
            .map(|r| {
                let row = &ids[r * s..(r + 1) * s];
                if self.eos == 2 {
                    // torch.argmax over the ids (cast to int32 there: ids < 2^31) returns the first max.
                    let mut best = 0;
                    for (j, &v) in row.iter().enumerate() {
                        if v > row[best] {
                            best = j;
                        }
                    }
                    best
                } else {
                    row.iter().position(|&v| v == self.eos).unwrap_or(0)
                }
            })
            .collect()
    }

    /// last_hidden_state [B, S, D] at each row's pooled position (ids: i64 [B, S] on the host)
    /// -> [B, D].
    fn pool(&self, ids: &Tensor, last_hidden_state: &Tensor) -> Result<Tensor> {
        let (b, s, d) = last_hidden_state.dims3(OP)?;
        let ids = ids.cpu_slice::<i64>(OP)?;
        let rows: Vec<i64> = self.pool_positions(ids, b, s).iter().enumerate().map(|(r, &j)| (r * s + j) as i64).collect();
        let idx = Tensor::from_vec(rows, [b], &last_hidden_state.device())?;
        ops::layout::gather_rows(&last_hidden_state.reshape([b * s, d])?, &idx)
    }
}
