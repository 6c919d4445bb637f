//! Single-file CompVis/LDM checkpoints (safetensors): the `v1-5-pruned.safetensors`,
//! `v2-1_768-ema-pruned.safetensors` kind, with the U-Net under `model.diffusion_model.`, the
//! VAE under `first_stage_model.` and the text encoder under `cond_stage_model.` (SD 1.x:
//! `cond_stage_model.transformer.text_model.*`, transformers' names; SD 2.x: OpenCLIP's
//! `cond_stage_model.model.*`). Each component comes out as `Weights` under the diffusers /
//! transformers key names the models load, the same tensors diffusers 0.42's converters give
//! (`loaders/single_file_utils.py`: `convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`,
//! `convert_ldm_clip_checkpoint`, `convert_open_clip_checkpoint`), with two transforms besides
//! renames: OpenCLIP's stacked `in_proj_weight`/`in_proj_bias` [3D, ..] split into q, k, v,
//! and the VAE mid-block attention's 1x1 conv weights [C, C, 1, 1] viewed as linear [C, C].
//!
//! Strictness: every tensor of the chosen component must find its place in the model (a tensor
//! the map cannot place keeps its LDM key, and the model's `finish` names it). Tensors of other
//! components and the rest of the file are skipped: the other prefixes, `model_ema.*` (the EMA
//! copy, which diffusers skips too unless asked; the `*-ema-pruned` files hold only the EMA
//! weights, already under `model.diffusion_model.`), the schedule buffers (`betas`,
//! `alphas_cumprod`, ...), and `first_stage_model.loss.*` (the training loss's LPIPS and
//! discriminator, which a few checkpoints carry). Dropped on purpose, as diffusers drops them:
//! OpenCLIP's `text_projection` and `logit_scale` (the joint image-text space, which SD does not
//! use) and OpenCLIP's layer 24 (`transformer.resblocks.23.*`): SD 2.x conditions on the
//! penultimate layer, and diffusers' SD 2.x `text_encoder/` is the 23 layers before it
//! (`SD_2_TEXT_ENCODER_KEYS_TO_IGNORE`; see src/models/clip/text_model.rs).
//!
//! Configs: a single file holds no config. As diffusers does (`infer_diffusers_model_type`,
//! `fetch_diffusers_config`), the kind is inferred from the tensors: SD 2.x when the cross
//! attention's context width (`input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight`
//! [.., 1024]) is OpenCLIP's, SD 1.x when it is 768; without that key (or for other widths)
//! from the text encoder's keys. The built-in configs are then SD 1.5's or SD 2.1's diffusers
//! folders, with `in_channels`/`out_channels` read from the U-Net's first and last conv (9 for
//! inpainting models). SD 2.x's prediction type cannot be read from a safetensors file (diffusers
//! guesses from a training step counter that `.ckpt` files carry): v-prediction unless the caller
//! says otherwise, as diffusers defaults. The U-Net map needs `layers_per_block` and the level
//! count, the VAE map the level count: both come from the config the caller gives, checked
//! against the file's block counts.

use crate::models::clip::ClipTextConfig;
use crate::models::ddim::DdimConfig;
use crate::models::weights::{Transform, Weights};
use crate::tensor::{DType, Device, Shape};
use crate::{Error, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The U-Net's prefix.
pub const UNET_PREFIX: &str = "model.diffusion_model.";
/// The VAE's prefix.
pub const VAE_PREFIX: &str = "first_stage_model.";
/// SD 1.x's text encoder (transformers' CLIPTextModel keys below it).
pub const CLIP_PREFIX: &str = "cond_stage_model.transformer.";
/// SD 2.x's text encoder (OpenCLIP's keys below it).
pub const OPEN_CLIP_PREFIX: &str = "cond_stage_model.model.";

/// The key diffusers reads the context width from.
const CONTEXT_KEY: &str = "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight";
const CLIP_KEY: &str = "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight";
const OPEN_CLIP_KEY: &str = "cond_stage_model.model.token_embedding.weight";
/// OpenCLIP ViT-H's last layer, which SD 2.x does not use.
const OPEN_CLIP_DROPPED_LAYER: usize = 23;

/// Which Stable Diffusion a single file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdKind {
    /// SD 1.x: CLIP ViT-L/14 text encoder (context 768), 8 heads per attention.
    Sd1,
    /// SD 2.x: OpenCLIP ViT-H/14 text encoder (context 1024), 64-wide heads, linear proj_in/out.
    Sd2,
}

/// An opened single-file checkpoint (only its header is read until weights are asked for).
pub struct SingleFile {
    path: PathBuf,
    /// Every stored key and its shape.
    shapes: BTreeMap<String, Shape>,
    kind: SdKind,
}

impl SingleFile {
    /// Opens `path` and infers the kind. Errors for a file that is not an SD 1.x/2.x LDM
    /// checkpoint (no U-Net or text encoder keys, or SDXL's `conditioner.*`).
    pub fn open(path: &Path) -> Result<SingleFile> {
        let f = crate::io::SafeTensorsFile::open(path)?;
        let mut shapes = BTreeMap::new();
        for k in f.keys() {
            let (s, _) = f.shape_of(&k)?;
            shapes.insert(k, s);
        }
        let kind = infer_kind(&shapes).map_err(|msg| Error::format(path, msg))?;
        Ok(SingleFile { path: path.to_path_buf(), shapes, kind })
    }

    pub fn kind(&self) -> SdKind {
        self.kind
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every stored key, sorted, with its shape.
    pub fn shapes(&self) -> &BTreeMap<String, Shape> {
        &self.shapes
    }

    /// The diffusers U-Net config for this kind (SD 1.5's or SD 2.1's unet/config.json), with
    /// `in_channels`/`out_channels` from the file's `input_blocks.0.0` and `out.2` convs.
    pub fn unet_config(&self) -> Value {
        let mut cfg = match self.kind {
            SdKind::Sd1 => sd15_unet_config(),
            SdKind::Sd2 => sd21_unet_config(),
        };
        let conv_in = self.shapes.get(&format!("{UNET_PREFIX}input_blocks.0.0.weight"));
        if let Some(&[_, c, _, _]) = conv_in.map(|s| s.dims()) {
            cfg["in_channels"] = c.into();
        }
        let conv_out = self.shapes.get(&format!("{UNET_PREFIX}out.2.weight"));
        if let Some(&[c, _, _, _]) = conv_out.map(|s| s.dims()) {
            cfg["out_channels"] = c.into();
        }
        cfg
    }

    /// The diffusers VAE config (SD 1.5's or SD 2.1's vae/config.json; scaling factor 0.18215).
    pub fn vae_config(&self) -> Value {
        vae_config(match self.kind {
            SdKind::Sd1 => 512,
            SdKind::Sd2 => 768,
        })
    }

    /// The text encoder's config.json for this kind (`ClipTextConfig::sd15` / `sd21`).
    pub fn text_encoder_config(&self) -> Value {
        match self.kind {
            SdKind::Sd1 => ClipTextConfig::sd15(),
            SdKind::Sd2 => ClipTextConfig::sd21(),
        }
    }

    /// The scheduler: SD's schedule (scaled_linear 0.00085..0.012, steps_offset 1), epsilon
    /// prediction for SD 1.x, v-prediction for SD 2.x (the 768 px models; pass `Some(false)` for
    /// the 512 px `-base` ones), unless `v_prediction` says otherwise.
    pub fn scheduler_config(&self, v_prediction: Option<bool>) -> DdimConfig {
        let v = v_prediction.unwrap_or(self.kind == SdKind::Sd2);
        if v {
            DdimConfig::sd21()
        } else {
            DdimConfig::sd15()
        }
    }

    fn component(&self, prefix: &str, what: &str) -> Result<usize> {
        let n = self.shapes.keys().filter(|k| k.starts_with(prefix)).count();
        if n == 0 {
            return Err(Error::format(&self.path, format!("no {what} tensors ({prefix}*) in this checkpoint")));
        }
        Ok(n)
    }

    /// The U-Net's tensors under diffusers' names, for the U-Net of `unet_config` (a diffusers
    /// unet/config.json: `layers_per_block` and `block_out_channels` set the map).
    pub fn unet_weights(&self, unet_config: &Value, dtype: DType, device: &Device) -> Result<Weights> {
        self.component(UNET_PREFIX, "U-Net")?;
        let layers = config_usize(unet_config, "layers_per_block")?;
        let levels = config_len(unet_config, "block_out_channels")?;
        // Down: conv_in + per level `layers` resnets and a downsampler but at the last level;
        // up: `layers + 1` resnets per level.
        for (block, want) in [("input_blocks", levels * (layers + 1)), ("output_blocks", levels * (layers + 1))] {
            let found = self.block_count(&format!("{UNET_PREFIX}{block}."));
            if found != want {
                return Err(Error::format(
                    &self.path,
                    format!(
                        "the U-Net has {found} {block}, a config with layers_per_block {layers} and {levels} levels \
                         (block_out_channels) needs {want}: wrong unet config for this checkpoint?"
                    ),
                ));
            }
        }
        let map = |k: &str, _: &Shape| -> Result<Vec<(String, Transform)>> {
            Ok(match k.strip_prefix(UNET_PREFIX) {
                Some(rest) => vec![(unet_key(rest, layers).unwrap_or_else(|| k.to_string()), Transform::Identity)],
                None => vec![],
            })
        };
        Weights::from_files_mapped(&self.path, std::slice::from_ref(&self.path), map, dtype, device)
    }

    /// The VAE's tensors under diffusers' names, for the VAE of `vae_config` (a diffusers
    /// vae/config.json: the length of `block_out_channels` sets the map of the decoder's levels,
    /// which LDM numbers from the bottom).
    pub fn vae_weights(&self, vae_config: &Value, dtype: DType, device: &Device) -> Result<Weights> {
        self.component(VAE_PREFIX, "VAE")?;
        let levels = config_len(vae_config, "block_out_channels")?;
        for block in ["encoder.down", "decoder.up"] {
            let found = self.block_count(&format!("{VAE_PREFIX}{block}."));
            if found != levels {
                return Err(Error::format(
                    &self.path,
                    format!(
                        "the VAE has {found} levels ({VAE_PREFIX}{block}.N), the config's block_out_channels \
                         has {levels}: wrong vae config for this checkpoint?"
                    ),
                ));
            }
        }
        let map = |k: &str, shape: &Shape| -> Result<Vec<(String, Transform)>> {
            Ok(match k.strip_prefix(VAE_PREFIX) {
                Some(rest) if rest.starts_with("loss.") => vec![],
                Some(rest) => vec![vae_key(rest, shape, levels).unwrap_or_else(|| (k.to_string(), Transform::Identity))],
                None => vec![],
            })
        };
        Weights::from_files_mapped(&self.path, std::slice::from_ref(&self.path), map, dtype, device)
    }

    /// The text encoder's tensors under transformers' CLIPTextModel names (`text_model.*`), for
    /// `ClipTextModel::new` with `text_encoder_config()` (or a config of the same shapes).
    pub fn text_encoder_weights(&self, dtype: DType, device: &Device) -> Result<Weights> {
        let map = |k: &str, shape: &Shape| -> Result<Vec<(String, Transform)>> {
            if let Some(rest) = k.strip_prefix(CLIP_PREFIX) {
                return Ok(vec![(rest.to_string(), Transform::Identity)]);
            }
            if let Some(rest) = k.strip_prefix(OPEN_CLIP_PREFIX) {
                return Ok(match open_clip_keys(rest, shape) {
                    Some(keys) => keys,
                    None => vec![(k.to_string(), Transform::Identity)],
                });
            }
            if k.starts_with("cond_stage_model.") {
                return Ok(vec![(k.to_string(), Transform::Identity)]);
            }
            Ok(vec![])
        };
        match self.kind {
            SdKind::Sd1 => self.component(CLIP_PREFIX, "CLIP text encoder")?,
            SdKind::Sd2 => self.component(OPEN_CLIP_PREFIX, "OpenCLIP text encoder")?,
        };
        Weights::from_files_mapped(&self.path, std::slice::from_ref(&self.path), map, dtype, device)
    }

    /// How many distinct N there are among keys `<prefix>N.*`.
    fn block_count(&self, prefix: &str) -> usize {
        let ids: BTreeSet<&str> = self
            .shapes
            .keys()
            .filter_map(|k| k.strip_prefix(prefix))
            .filter_map(|rest| rest.split('.').next())
            .collect();
        ids.len()
    }
}

/// SD 1.x or 2.x from the tensors, or why not.
fn infer_kind(shapes: &BTreeMap<String, Shape>) -> std::result::Result<SdKind, String> {
    if shapes.keys().any(|k| k.starts_with("conditioner.")) {
        return Err("an SDXL-style checkpoint (conditioner.* keys): only SD 1.x and 2.x single files are read".into());
    }
    match shapes.get(CONTEXT_KEY).and_then(|s| s.dims().last().copied()) {
        Some(1024) => return Ok(SdKind::Sd2),
        Some(768) => return Ok(SdKind::Sd1),
        _ => {}
    }
    if shapes.contains_key(OPEN_CLIP_KEY) {
        Ok(SdKind::Sd2)
    } else if shapes.contains_key(CLIP_KEY) {
        Ok(SdKind::Sd1)
    } else {
        Err(format!(
            "not an SD 1.x/2.x LDM checkpoint: no context width to read ({CONTEXT_KEY} [.., 768 or 1024]) and \
             no text encoder ({CLIP_KEY} or {OPEN_CLIP_KEY})"
        ))
    }
}

fn config_usize(cfg: &Value, field: &str) -> Result<usize> {
    cfg.get(field)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| Error::BadInput(format!("config field `{field}` must be one integer here, got {}", cfg.get(field).unwrap_or(&Value::Null))))
}

fn config_len(cfg: &Value, field: &str) -> Result<usize> {
    cfg.get(field)
        .and_then(Value::as_array)
        .map(Vec::len)
        .filter(|&n| n > 0)
        .ok_or_else(|| Error::BadInput(format!("config field `{field}` must be a non-empty list, got {}", cfg.get(field).unwrap_or(&Value::Null))))
}

/// Splits `a.b.c.weight` into (`a.b.c`, `weight`).
fn split_param(k: &str) -> Option<(&str, &str)> {
    k.rsplit_once('.')
}

/// `<i>.<j>.<tail>` -> (i, j, tail).
fn two_indices(rest: &str) -> Option<(usize, usize, &str)> {
    let mut it = rest.splitn(3, '.');
    let i = it.next()?.parse().ok()?;
    let j = it.next()?.parse().ok()?;
    Some((i, j, it.next()?))
}

/// An LDM U-Net resnet's module names (`ResBlock`) -> diffusers' `ResnetBlock2D`.
fn unet_resnet(tail: &str) -> Option<String> {
    let (module, param) = split_param(tail)?;
    let m = match module {
        "in_layers.0" => "norm1",
        "in_layers.2" => "conv1",
        "out_layers.0" => "norm2",
        "out_layers.3" => "conv2",
        "emb_layers.1" => "time_emb_proj",
        "skip_connection" => "conv_shortcut",
        _ => return None,
    };
    Some(format!("{m}.{param}"))
}

/// The diffusers UNet2DConditionModel key of an LDM U-Net key (`rest` is the key without
/// `model.diffusion_model.`), for a U-Net with `layers_per_block` resnets per down level; None
/// when it has none. As `convert_ldm_unet_checkpoint`: input block i >= 1 is level
/// (i - 1) / (L + 1), slot (i - 1) % (L + 1) (slot L holds the downsampler `0.op`); output block
/// i is level i / (L + 1), slot i % (L + 1), its upsampler `1.conv` (no attention) or `2.conv`.
pub fn unet_key(rest: &str, layers_per_block: usize) -> Option<String> {
    let per_level = layers_per_block + 1;
    let (module, param) = split_param(rest)?;
    let fixed = match module {
        "time_embed.0" => Some("time_embedding.linear_1"),
        "time_embed.2" => Some("time_embedding.linear_2"),
        "input_blocks.0.0" => Some("conv_in"),
        "out.0" => Some("conv_norm_out"),
        "out.2" => Some("conv_out"),
        _ => None,
    };
    if let Some(m) = fixed {
        return Some(format!("{m}.{param}"));
    }
    if let Some(r) = rest.strip_prefix("input_blocks.") {
        let (i, j, tail) = two_indices(r)?;
        if i == 0 {
            return None;
        }
        let (level, slot) = ((i - 1) / per_level, (i - 1) % per_level);
        return match j {
            0 => match tail.strip_prefix("op.") {
                Some(p) => Some(format!("down_blocks.{level}.downsamplers.0.conv.{p}")),
                None => Some(format!("down_blocks.{level}.resnets.{slot}.{}", unet_resnet(tail)?)),
            },
            1 => Some(format!("down_blocks.{level}.attentions.{slot}.{tail}")),
            _ => None,
        };
    }
    if let Some(r) = rest.strip_prefix("middle_block.") {
        let (j, tail) = r.split_once('.')?;
        return match j {
            "0" => Some(format!("mid_block.resnets.0.{}", unet_resnet(tail)?)),
            "1" => Some(format!("mid_block.attentions.0.{tail}")),
            "2" => Some(format!("mid_block.resnets.1.{}", unet_resnet(tail)?)),
            _ => None,
        };
    }
    if let Some(r) = rest.strip_prefix("output_blocks.") {
        let (i, j, tail) = two_indices(r)?;
        let (level, slot) = (i / per_level, i % per_level);
        let upsampler = tail.strip_prefix("conv.").map(|p| format!("up_blocks.{level}.upsamplers.0.conv.{p}"));
        return match j {
            0 => Some(format!("up_blocks.{level}.resnets.{slot}.{}", unet_resnet(tail)?)),
            1 => upsampler.or_else(|| Some(format!("up_blocks.{level}.attentions.{slot}.{tail}"))),
            2 => upsampler,
            _ => None,
        };
    }
    None
}

/// An LDM VAE resnet's tail -> diffusers' (`nin_shortcut` is `conv_shortcut`; the rest agree).
fn vae_resnet(tail: &str) -> Option<String> {
    let (module, param) = split_param(tail)?;
    match module {
        "norm1" | "conv1" | "norm2" | "conv2" => Some(tail.to_string()),
        "nin_shortcut" => Some(format!("conv_shortcut.{param}")),
        _ => None,
    }
}

/// The mid block of the encoder or decoder (`mid.<tail>`, `<coder>` = encoder/decoder).
fn vae_mid(coder: &str, tail: &str, shape: &Shape) -> Option<(String, Transform)> {
    if let Some(t) = tail.strip_prefix("block_1.") {
        return Some((format!("{coder}.mid_block.resnets.0.{}", vae_resnet(t)?), Transform::Identity));
    }
    if let Some(t) = tail.strip_prefix("block_2.") {
        return Some((format!("{coder}.mid_block.resnets.1.{}", vae_resnet(t)?), Transform::Identity));
    }
    let (module, param) = split_param(tail.strip_prefix("attn_1.")?)?;
    let m = match module {
        "norm" => "group_norm",
        "q" => "to_q",
        "k" => "to_k",
        "v" => "to_v",
        "proj_out" => "to_out.0",
        _ => return None,
    };
    // q/k/v/proj_out are 1x1 convs in LDM [C, C, 1, 1], linears in diffusers [C, C].
    let transform = match shape.dims() {
        &[o, i, ..] if param == "weight" && shape.rank() > 2 => Transform::Reshape(vec![o, i]),
        _ => Transform::Identity,
    };
    Some((format!("{coder}.mid_block.attentions.0.{m}.{param}"), transform))
}

/// The diffusers AutoencoderKL key (and transform) of an LDM VAE key (`rest` is the key without
/// `first_stage_model.`) of `shape`, for a VAE with `levels` levels; None when it has none.
/// As `convert_ldm_vae_checkpoint`: the decoder's LDM level j is diffusers' up block
/// levels - 1 - j.
pub fn vae_key(rest: &str, shape: &Shape, levels: usize) -> Option<(String, Transform)> {
    let same = |k: String| Some((k, Transform::Identity));
    let (coder, tail) = rest.split_once('.')?;
    if coder == "quant_conv" || coder == "post_quant_conv" {
        return same(rest.to_string());
    }
    if coder != "encoder" && coder != "decoder" {
        return None;
    }
    let (module, param) = split_param(tail)?;
    match module {
        "conv_in" | "conv_out" => return same(rest.to_string()),
        "norm_out" => return same(format!("{coder}.conv_norm_out.{param}")),
        _ => {}
    }
    if let Some(t) = tail.strip_prefix("mid.") {
        return vae_mid(coder, t, shape);
    }
    let (i, kind, t) = {
        let r = tail.strip_prefix(if coder == "encoder" { "down." } else { "up." })?;
        let mut it = r.splitn(3, '.');
        (it.next()?.parse::<usize>().ok()?, it.next()?, it.next()?)
    };
    if i >= levels {
        return None;
    }
    let (blocks, level, sampler) = if coder == "encoder" {
        ("down_blocks", i, ("downsample", "downsamplers"))
    } else {
        ("up_blocks", levels - 1 - i, ("upsample", "upsamplers"))
    };
    if kind == sampler.0 {
        let p = t.strip_prefix("conv.")?;
        return same(format!("{coder}.{blocks}.{level}.{}.0.conv.{p}", sampler.1));
    }
    if kind != "block" {
        return None;
    }
    let (j, rt) = t.split_once('.')?;
    let j: usize = j.parse().ok()?;
    same(format!("{coder}.{blocks}.{level}.resnets.{j}.{}", vae_resnet(rt)?))
}

/// The transformers CLIPTextModel keys (and transforms) of an OpenCLIP text-tower key (`rest` is
/// the key without `cond_stage_model.model.`) of `shape`: none for the tensors SD 2.x does not
/// use (`text_projection`, `logit_scale`, layer 24), three for the stacked q/k/v `in_proj`;
/// None when it has no counterpart. As `convert_open_clip_checkpoint`.
pub fn open_clip_keys(rest: &str, shape: &Shape) -> Option<Vec<(String, Transform)>> {
    let one = |k: &str| Some(vec![(format!("text_model.{k}"), Transform::Identity)]);
    match rest {
        "token_embedding.weight" => return one("embeddings.token_embedding.weight"),
        "positional_embedding" => return one("embeddings.position_embedding.weight"),
        "ln_final.weight" => return one("final_layer_norm.weight"),
        "ln_final.bias" => return one("final_layer_norm.bias"),
        "text_projection" | "logit_scale" => return Some(vec![]),
        _ => {}
    }
    let r = rest.strip_prefix("transformer.resblocks.")?;
    let (i, tail) = r.split_once('.')?;
    let i: usize = i.parse().ok()?;
    if i == OPEN_CLIP_DROPPED_LAYER {
        return Some(vec![]);
    }
    let layer = format!("text_model.encoder.layers.{i}");
    if let Some(param) = tail.strip_prefix("attn.in_proj_") {
        if shape.dims().first().is_none_or(|&n| !n.is_multiple_of(3)) {
            return None;
        }
        return Some(
            ["q_proj", "k_proj", "v_proj"]
                .iter()
                .enumerate()
                .map(|(index, p)| (format!("{layer}.self_attn.{p}.{param}"), Transform::Slice { index, parts: 3 }))
                .collect(),
        );
    }
    let (module, param) = split_param(tail)?;
    let m = match module {
        "ln_1" => "layer_norm1",
        "ln_2" => "layer_norm2",
        "mlp.c_fc" => "mlp.fc1",
        "mlp.c_proj" => "mlp.fc2",
        "attn.out_proj" => "self_attn.out_proj",
        _ => return None,
    };
    Some(vec![(format!("{layer}.{m}.{param}"), Transform::Identity)])
}

const SD_DOWN: [&str; 4] = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"];
const SD_UP: [&str; 4] = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"];

/// runwayml/stable-diffusion-v1-5 unet/config.json.
pub fn sd15_unet_config() -> Value {
    json!({
        "_class_name": "UNet2DConditionModel",
        "act_fn": "silu",
        "attention_head_dim": 8,
        "block_out_channels": [320, 640, 1280, 1280],
        "center_input_sample": false,
        "cross_attention_dim": 768,
        "down_block_types": SD_DOWN,
        "downsample_padding": 1,
        "flip_sin_to_cos": true,
        "freq_shift": 0,
        "in_channels": 4,
        "layers_per_block": 2,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "out_channels": 4,
        "sample_size": 64,
        "up_block_types": SD_UP
    })
}

/// stabilityai/stable-diffusion-2-1 unet/config.json (the 768 px v-prediction model, the config
/// diffusers picks for every SD 2.x single file; `upcast_attention` only changes 16-bit math).
pub fn sd21_unet_config() -> Value {
    json!({
        "_class_name": "UNet2DConditionModel",
        "act_fn": "silu",
        "attention_head_dim": [5, 10, 20, 20],
        "block_out_channels": [320, 640, 1280, 1280],
        "center_input_sample": false,
        "cross_attention_dim": 1024,
        "down_block_types": SD_DOWN,
        "downsample_padding": 1,
        "dual_cross_attention": false,
        "flip_sin_to_cos": true,
        "freq_shift": 0,
        "in_channels": 4,
        "layers_per_block": 2,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "num_class_embeds": null,
        "only_cross_attention": false,
        "out_channels": 4,
        "sample_size": 96,
        "up_block_types": SD_UP,
        "upcast_attention": true,
        "use_linear_projection": true
    })
}

/// SD 1.5's / 2.1's vae/config.json (they differ only in `sample_size`).
pub fn vae_config(sample_size: usize) -> Value {
    json!({
        "_class_name": "AutoencoderKL",
        "act_fn": "silu",
        "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
        "in_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "out_channels": 3,
        "sample_size": sample_size,
        "scaling_factor": 0.18215,
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_from_context_width_then_text_encoder() {
        let with = |keys: &[(&str, &[usize])]| {
            let m: BTreeMap<String, Shape> = keys.iter().map(|(k, s)| (k.to_string(), Shape::from(*s))).collect();
            infer_kind(&m)
        };
        assert_eq!(with(&[(CONTEXT_KEY, &[640, 1024])]), Ok(SdKind::Sd2));
        assert_eq!(with(&[(CONTEXT_KEY, &[640, 768]), (OPEN_CLIP_KEY, &[10, 8])]), Ok(SdKind::Sd1));
        assert_eq!(with(&[(CONTEXT_KEY, &[8, 8]), (OPEN_CLIP_KEY, &[10, 8])]), Ok(SdKind::Sd2));
        assert_eq!(with(&[(CLIP_KEY, &[77, 8])]), Ok(SdKind::Sd1));
        assert!(with(&[("first_stage_model.encoder.conv_in.weight", &[1])]).unwrap_err().contains("not an SD"));
        assert!(with(&[("conditioner.embedders.0.x", &[1])]).unwrap_err().contains("SDXL"));
    }
}
