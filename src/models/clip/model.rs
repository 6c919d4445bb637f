//! CLIPModel: both towers, their projections into the joint embedding and the logit scale, as
//! transformers 5.25 computes them (`models/clip/modeling_clip.py`, `CLIPModel.forward`):
//! image_embeds = visual_projection(vision pooled) / its L2 norm, text_embeds likewise with
//! text_projection, logits_per_image = exp(logit_scale) * image_embeds text_embeds^T.
//!
//! Legend: N = images, P = prompts, S = tokens, Dt / Dv = the towers' widths, E = projection_dim.
//!
//! Folder: a transformers CLIPModel as `save_pretrained` writes it (openai/clip-vit-base-patch32
//! and the like): config.json (`text_config`, `vision_config`, `projection_dim`),
//! model.safetensors with `text_model.*`, `vision_model.*`, `visual_projection.weight`,
//! `text_projection.weight`, `logit_scale`, the tokenizer files (vocab.json, merges.txt) and
//! preprocessor_config.json (read by the image preprocessing, src/features/clip_prompts.rs).

use super::model_config::ClipConfig;
use super::text_model::ClipTextModel;
use super::tokenizer::ClipTokenizer;
use super::vision_model::{ClipVisionModel, ClipVisionOutput};
use crate::models::common::layers::Linear;
use crate::models::weights::Weights;
use crate::ops;
use crate::tensor::{DType, Device, Tensor};
use crate::{Context, Result};
use std::path::Path;

/// Which tokens a prompt is padded to (CLIP's context length).
const CONTEXT: usize = 77;

pub struct ClipModel {
    pub text_model: ClipTextModel,
    pub vision_model: ClipVisionModel,
    /// [E, Dv], no bias
    visual_projection: Linear,
    /// [E, Dt], no bias
    text_projection: Linear,
    /// exp(logit_scale), read once.
    logit_scale_exp: f32,
    tokenizer: Option<ClipTokenizer>,
}

impl ClipModel {
    /// A CLIPModel folder (see the module docs); the tokenizer is loaded when the folder has one.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<ClipModel> {
        let config = ClipConfig::from_file(&dir.join("config.json"))?;
        let w = Weights::from_dir(dir, None, dtype, device)?;
        let mut model = ClipModel::new(config, &w)
            .with_context(|| format!("loading the CLIP model in {}", dir.display()))?;
        if dir.join("vocab.json").exists() {
            model.tokenizer = Some(ClipTokenizer::from_dir(dir)?);
        }
        Ok(model)
    }

    /// The model of `config` from `w`; every tensor must be used, except the towers'
    /// `position_ids` buffers.
    pub fn new(config: ClipConfig, w: &Weights) -> Result<ClipModel> {
        let root = w.root();
        let (text_root, vision_root) = (root.pp("text_model"), root.pp("vision_model"));
        let e = config.projection_dim;
        let (dt, dv) = (
            config.text_config.hidden_size,
            config.vision_config.hidden_size,
        );
        let text_model = ClipTextModel::from_scope(config.text_config, &text_root)?;
        let vision_model = ClipVisionModel::from_scope(config.vision_config, &vision_root)?;
        let visual_projection = Linear::load(&root.pp("visual_projection"), dv, e, false)?;
        let text_projection = Linear::load(&root.pp("text_projection"), dt, e, false)?;
        let logit_scale =
            ops::to_dtype(&root.get("logit_scale", &[])?, DType::F32)?.to_f32_vec()?[0];
        let ignorable = [
            ClipTextModel::position_ids_key(&text_root),
            ClipVisionModel::position_ids_key(&vision_root),
        ];
        w.finish(|k| ignorable.iter().any(|i| i == k))?;
        Ok(ClipModel {
            text_model,
            vision_model,
            visual_projection,
            text_projection,
            logit_scale_exp: logit_scale.exp(),
            tokenizer: None,
        })
    }

    /// exp(logit_scale), the factor of the cosine similarities.
    pub fn logit_scale_exp(&self) -> f32 {
        self.logit_scale_exp
    }

    /// pixel_values: [N, C, R, R] -> the vision tower's outputs and the image features
    /// visual_projection(pooled) [N, E] (not normalized: `get_image_features`).
    pub fn image_features(
        &self,
        pixel_values: &Tensor,
        output_hidden_states: bool,
    ) -> Result<(ClipVisionOutput, Tensor)> {
        let out = self
            .vision_model
            .forward(pixel_values, output_hidden_states)?;
        let f = self.visual_projection.forward(&out.pooler_output)?;
        Ok((out, f))
    }

    /// input_ids: [P, S] -> text_projection(pooled) [P, E] (not normalized: `get_text_features`).
    pub fn text_features(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.text_projection
            .forward(&self.text_model.forward(input_ids, false)?.pooler_output)
    }

    /// Prompts tokenized with the folder's tokenizer (padded to 77) -> [P, 77] i64.
    pub fn tokenize(&self, prompts: &[&str]) -> Result<Tensor> {
        let tok = self.tokenizer.as_ref().ok_or_else(|| {
            crate::Error::BadInput("the CLIP model folder has no tokenizer (vocab.json, merges.txt): prompts cannot be encoded".into())
        })?;
        tok.encode_batch(prompts, CONTEXT)
    }

    /// image_embeds [N, E], text_embeds [P, E] (both normalized) -> logits_per_image [N, P] =
    /// exp(logit_scale) * cosine similarity.
    pub fn logits_per_image(&self, image_embeds: &Tensor, text_embeds: &Tensor) -> Result<Tensor> {
        ops::scale(
            &ops::matmul_t(image_embeds, text_embeds, false, true)?,
            self.logit_scale_exp,
        )
    }
}

/// x: [N, E] -> each row divided by its L2 norm (`x / x.norm(dim=-1, keepdim=True)`), f32 on the
/// host then back to x's device.
pub fn normalize_rows(x: &Tensor) -> Result<Tensor> {
    let (n, e) = x.dims2("clip normalize")?;
    let mut v = ops::to_dtype(x, DType::F32)?.to_f32_vec()?;
    for row in v.chunks_exact_mut(e.max(1)) {
        let norm = row
            .iter()
            .map(|&a| (a as f64) * (a as f64))
            .sum::<f64>()
            .sqrt();
        row.iter_mut().for_each(|a| *a = (*a as f64 / norm) as f32);
    }
    Tensor::from_vec(v, [n, e], &x.device())
}
