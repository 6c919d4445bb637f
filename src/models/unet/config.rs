//! `config.json` of a diffusers `UNet2DConditionModel`, under diffusers' field names and with its
//! defaults (diffusers 0.42 `models/unets/unet_2d_condition.py`, `__init__`), read as every
//! config is (src/io/config.rs): unknown keys are named in a warning on stderr, a bad value is
//! an error naming its field, and `validate` rejects every value that would change the
//! computation and that we do not implement.
//!
//! The SD naming quirk: in SD configs `attention_head_dim` is the **number of heads** per level,
//! not the head size. diffusers keeps the name for the 40,000+ configs that use it and computes
//! `num_attention_heads = num_attention_heads or attention_head_dim`, then gives each
//! transformer `out_channels // heads` channels per head
//! (<https://github.com/huggingface/diffusers/blob/v0.42.1/src/diffusers/models/unets/unet_2d_condition.py#L243-L254>,
//! and `unet_2d_blocks.py` `CrossAttnDownBlock2D.__init__`). diffusers 0.42 raises a ValueError
//! when `num_attention_heads` itself is set (the reason:
//! <https://github.com/huggingface/diffusers/issues/2011#issuecomment-1547958131>), so we reject
//! it too; `level_table` applies the quirk (`Level::heads`).

use crate::config_fields;
use crate::io::config::{check_class, config_object, must_be_null, parse_config, read_config, warn_unknown};
use crate::Result;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::Path;

/// An int for every level, or one value per level (diffusers accepts both for most per-level
/// fields).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PerLevel<T> {
    One(T),
    Each(Vec<T>),
}

impl<T: Clone + std::fmt::Debug> PerLevel<T> {
    /// One value per level, for `levels` levels; a list of another length is an error naming
    /// `field`.
    pub fn expand(&self, field: &str, levels: usize) -> std::result::Result<Vec<T>, String> {
        match self {
            PerLevel::One(v) => Ok(vec![v.clone(); levels]),
            PerLevel::Each(v) if v.len() == levels => Ok(v.clone()),
            PerLevel::Each(v) => Err(format!("`{field}` = {v:?} has {} entries, the model has {levels} levels", v.len())),
        }
    }
}

/// The U-Net's config. A missing field takes diffusers' default. Fields that do not change the
/// computation of the supported block types are read and ignored: `sample_size`, `dropout`
/// (inference only), `resnet_skip_time_act` and `resnet_out_scale_factor` (used only by the
/// Simple/Resnet* block types), `cross_attention_norm` and `mid_block_only_cross_attention`
/// (Simple* blocks only), `addition_embed_type_num_heads`, `addition_time_embed_dim` and
/// `projection_class_embeddings_input_dim` (only with the class/addition embeddings, which must
/// be null).
#[derive(Debug, Clone, PartialEq)]
pub struct UNet2DConditionConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    /// sample = 2 * sample - 1 before conv_in.
    pub center_input_sample: bool,
    /// Timestep embedding order: cos then sin when true (SD), sin then cos when false.
    pub flip_sin_to_cos: bool,
    /// The `downscale_freq_shift` of the sinusoidal embedding (0 in SD).
    pub freq_shift: f64,
    pub down_block_types: Vec<String>,
    pub mid_block_type: Option<String>,
    pub up_block_types: Vec<String>,
    pub only_cross_attention: PerLevel<bool>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: PerLevel<usize>,
    /// Padding of the down blocks' stride-2 convs; 0 means diffusers' asymmetric (0, 1, 0, 1).
    pub downsample_padding: usize,
    /// The mid block's resnets divide their output by this.
    pub mid_block_scale_factor: f64,
    pub act_fn: String,
    pub norm_num_groups: Option<usize>,
    pub norm_eps: f64,
    pub cross_attention_dim: PerLevel<usize>,
    pub transformer_layers_per_block: PerLevel<usize>,
    /// The number of heads per level in SD configs (see the module doc).
    pub attention_head_dim: PerLevel<usize>,
    pub num_attention_heads: Option<Value>,
    pub dual_cross_attention: bool,
    /// Linear proj_in/proj_out on tokens (SD 2) instead of 1x1 convs (SD 1).
    pub use_linear_projection: bool,
    /// Attention scores in f32 for f16 models (SD 2.1 768). Our attention always forms scores
    /// and the softmax in f32 whatever the storage dtype, so true and false compute the same
    /// here; diffusers' default SDPA processor ignores the flag as well (it is read only by the
    /// classic `AttnProcessor`:
    /// <https://github.com/huggingface/diffusers/blob/v0.42.1/src/diffusers/models/attention_processor.py#L674>).
    pub upcast_attention: bool,
    /// "default" (temb added before norm2) or "scale_shift" (norm2 then x * (1 + scale) + shift).
    pub resnet_time_scale_shift: String,
    pub time_embedding_type: String,
    /// Width of the time embedding MLP; None = 4 * block_out_channels[0].
    pub time_embedding_dim: Option<usize>,
    pub conv_in_kernel: usize,
    pub conv_out_kernel: usize,
    pub attention_type: String,
    pub class_embeddings_concat: bool,
    pub reverse_transformer_layers_per_block: Option<Value>,
    pub encoder_hid_dim: Option<Value>,
    pub encoder_hid_dim_type: Option<Value>,
    pub class_embed_type: Option<Value>,
    pub addition_embed_type: Option<Value>,
    pub num_class_embeds: Option<Value>,
    pub time_embedding_act_fn: Option<Value>,
    pub timestep_post_act: Option<Value>,
    pub time_cond_proj_dim: Option<Value>,
}

impl Default for UNet2DConditionConfig {
    /// diffusers' defaults (`UNet2DConditionModel.__init__`): SD 1.x's structure.
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        UNet2DConditionConfig {
            in_channels: 4,
            out_channels: 4,
            center_input_sample: false,
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            down_block_types: s(&["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]),
            mid_block_type: Some("UNetMidBlock2DCrossAttn".into()),
            up_block_types: s(&["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]),
            only_cross_attention: PerLevel::One(false),
            block_out_channels: vec![320, 640, 1280, 1280],
            layers_per_block: PerLevel::One(2),
            downsample_padding: 1,
            mid_block_scale_factor: 1.0,
            act_fn: "silu".into(),
            norm_num_groups: Some(32),
            norm_eps: 1e-5,
            cross_attention_dim: PerLevel::One(1280),
            transformer_layers_per_block: PerLevel::One(1),
            attention_head_dim: PerLevel::One(8),
            num_attention_heads: None,
            dual_cross_attention: false,
            use_linear_projection: false,
            upcast_attention: false,
            resnet_time_scale_shift: "default".into(),
            time_embedding_type: "positional".into(),
            time_embedding_dim: None,
            conv_in_kernel: 3,
            conv_out_kernel: 3,
            attention_type: "default".into(),
            class_embeddings_concat: false,
            reverse_transformer_layers_per_block: None,
            encoder_hid_dim: None,
            encoder_hid_dim_type: None,
            class_embed_type: None,
            addition_embed_type: None,
            num_class_embeds: None,
            time_embedding_act_fn: None,
            timestep_post_act: None,
            time_cond_proj_dim: None,
        }
    }
}

/// Keys read and ignored (see the struct doc).
const IGNORED: &[&str] = &[
    "sample_size",
    "dropout",
    "resnet_skip_time_act",
    "resnet_out_scale_factor",
    "cross_attention_norm",
    "mid_block_only_cross_attention",
    "addition_embed_type_num_heads",
    "addition_time_embed_dim",
    "projection_class_embeddings_input_dim",
];

/// The block classes we implement, as config.json names them.
pub const DOWN_BLOCK_TYPES: [&str; 2] = ["CrossAttnDownBlock2D", "DownBlock2D"];
pub const UP_BLOCK_TYPES: [&str; 2] = ["UpBlock2D", "CrossAttnUpBlock2D"];
pub const MID_BLOCK_TYPE: &str = "UNetMidBlock2DCrossAttn";

/// What the model needs per level, resolved from the per-level fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    pub channels: usize,
    pub layers: usize,
    pub heads: usize,
    pub transformer_layers: usize,
    pub cross_attention_dim: usize,
}

impl UNet2DConditionConfig {
    /// Reads and validates `config.json` (a UNet2DConditionModel's).
    pub fn from_file(path: &Path) -> Result<Self> {
        parse_config(path, &read_config(path, "model")?, Self::from_map, Self::validate)
    }

    /// Parses and validates a config given as JSON (e.g. a single-file checkpoint's inferred
    /// config); `source` names it in messages.
    pub fn from_value(source: &Path, value: &Value) -> Result<Self> {
        parse_config(source, config_object(source, value, "U-Net")?, Self::from_map, Self::validate)
    }

    fn from_map(path: &Path, map: &Map<String, Value>) -> std::result::Result<Self, String> {
        check_class(map, "UNet2DConditionModel")?;
        let mut c = UNet2DConditionConfig::default();
        let mut known = config_fields!(map, c;
            in_channels,
            out_channels,
            center_input_sample,
            flip_sin_to_cos,
            freq_shift,
            down_block_types,
            mid_block_type,
            up_block_types,
            only_cross_attention,
            block_out_channels,
            layers_per_block,
            downsample_padding,
            mid_block_scale_factor,
            act_fn,
            norm_num_groups,
            norm_eps,
            cross_attention_dim,
            transformer_layers_per_block,
            attention_head_dim,
            num_attention_heads,
            dual_cross_attention,
            use_linear_projection,
            upcast_attention,
            resnet_time_scale_shift,
            time_embedding_type,
            time_embedding_dim,
            conv_in_kernel,
            conv_out_kernel,
            attention_type,
            class_embeddings_concat,
            reverse_transformer_layers_per_block,
            encoder_hid_dim,
            encoder_hid_dim_type,
            class_embed_type,
            addition_embed_type,
            num_class_embeds,
            time_embedding_act_fn,
            timestep_post_act,
            time_cond_proj_dim
        );
        known.extend(IGNORED);
        warn_unknown(path, map, &known);
        Ok(c)
    }

    /// The number of resolution levels.
    pub fn levels(&self) -> usize {
        self.block_out_channels.len()
    }

    /// Per-level sizes (down-block order), with the head-count quirk applied.
    pub fn level_table(&self) -> std::result::Result<Vec<Level>, String> {
        let n = self.levels();
        let layers = self.layers_per_block.expand("layers_per_block", n)?;
        let heads = self.attention_head_dim.expand("attention_head_dim", n)?;
        let tl = self.transformer_layers_per_block.expand("transformer_layers_per_block", n)?;
        let cross = self.cross_attention_dim.expand("cross_attention_dim", n)?;
        Ok((0..n)
            .map(|i| Level {
                channels: self.block_out_channels[i],
                layers: layers[i],
                heads: heads[i],
                transformer_layers: tl[i],
                cross_attention_dim: cross[i],
            })
            .collect())
    }

    /// Width of the time embedding (the resnets' `temb` input).
    pub fn time_embed_dim(&self) -> usize {
        self.time_embedding_dim.unwrap_or(4 * self.block_out_channels.first().copied().unwrap_or(0))
    }

    /// The group count of every GroupNorm.
    pub fn groups(&self) -> usize {
        self.norm_num_groups.unwrap_or(0)
    }

    /// Rejects what we do not implement, naming the field and its value.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let n = self.levels();
        if n == 0 {
            return Err("`block_out_channels` is empty".into());
        }
        if self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(format!(
                "`down_block_types` ({}) and `up_block_types` ({}) must both have one entry per `block_out_channels` entry ({n})",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        for t in &self.down_block_types {
            if !DOWN_BLOCK_TYPES.contains(&t.as_str()) {
                return Err(format!("down block type {t:?} is not supported (supported: {})", DOWN_BLOCK_TYPES.join(", ")));
            }
        }
        for t in &self.up_block_types {
            if !UP_BLOCK_TYPES.contains(&t.as_str()) {
                return Err(format!("up block type {t:?} is not supported (supported: {})", UP_BLOCK_TYPES.join(", ")));
            }
        }
        if self.mid_block_type.as_deref() != Some(MID_BLOCK_TYPE) {
            return Err(format!("`mid_block_type` = {:?} is not supported (only {MID_BLOCK_TYPE:?})", self.mid_block_type));
        }
        let only_cross = self.only_cross_attention.expand("only_cross_attention", n)?;
        if only_cross.iter().any(|&b| b) {
            return Err(format!("`only_cross_attention` = {only_cross:?} is not supported (only false)"));
        }
        if self.dual_cross_attention {
            return Err("`dual_cross_attention` = true is not supported".into());
        }
        must_be_null(
            "num_attention_heads",
            &self.num_attention_heads,
            "diffusers 0.42 rejects it too; SD configs give the head count in `attention_head_dim`",
        )?;
        for (name, v) in [
            ("class_embed_type", &self.class_embed_type),
            ("addition_embed_type", &self.addition_embed_type),
            ("num_class_embeds", &self.num_class_embeds),
            ("encoder_hid_dim", &self.encoder_hid_dim),
            ("encoder_hid_dim_type", &self.encoder_hid_dim_type),
            ("time_cond_proj_dim", &self.time_cond_proj_dim),
            ("time_embedding_act_fn", &self.time_embedding_act_fn),
            ("timestep_post_act", &self.timestep_post_act),
            ("reverse_transformer_layers_per_block", &self.reverse_transformer_layers_per_block),
        ] {
            must_be_null(name, v, "SD 1.x/2.x U-Nets leave it null")?;
        }
        if self.class_embeddings_concat {
            return Err("`class_embeddings_concat` = true is not supported".into());
        }
        if self.act_fn != "silu" && self.act_fn != "swish" {
            return Err(format!("`act_fn` = {:?} is not supported (only \"silu\")", self.act_fn));
        }
        if self.time_embedding_type != "positional" {
            return Err(format!("`time_embedding_type` = {:?} is not supported (only \"positional\")", self.time_embedding_type));
        }
        if !matches!(self.resnet_time_scale_shift.as_str(), "default" | "scale_shift") {
            return Err(format!(
                "`resnet_time_scale_shift` = {:?} is not supported (\"default\", \"scale_shift\")",
                self.resnet_time_scale_shift
            ));
        }
        if self.attention_type != "default" {
            return Err(format!("`attention_type` = {:?} is not supported (only \"default\")", self.attention_type));
        }
        let groups = self.norm_num_groups.ok_or("`norm_num_groups` = null (no GroupNorm) is not supported")?;
        if groups == 0 {
            return Err("`norm_num_groups` must be at least 1".into());
        }
        for (name, k) in [("conv_in_kernel", self.conv_in_kernel), ("conv_out_kernel", self.conv_out_kernel)] {
            if k % 2 == 0 {
                return Err(format!("`{name}` = {k} must be odd (diffusers pads by (k - 1) / 2)"));
            }
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return Err(format!("`norm_eps` = {} must be finite and >= 0", self.norm_eps));
        }
        if !(self.mid_block_scale_factor.is_finite() && self.mid_block_scale_factor != 0.0) {
            return Err(format!("`mid_block_scale_factor` = {} must be finite and nonzero", self.mid_block_scale_factor));
        }
        let table = self.level_table()?;
        let cross: Vec<usize> = table.iter().map(|l| l.cross_attention_dim).collect();
        if cross.iter().any(|&c| c != cross[0]) {
            return Err(format!("`cross_attention_dim` = {cross:?}: different widths per level are not supported"));
        }
        for (i, l) in table.iter().enumerate() {
            if l.channels == 0 || l.channels % groups != 0 {
                return Err(format!("`block_out_channels`[{i}] = {} does not split into `norm_num_groups` = {groups} groups", l.channels));
            }
            let has_attention = self.down_block_types[i] == DOWN_BLOCK_TYPES[0]
                || self.up_block_types[n - 1 - i] == UP_BLOCK_TYPES[1]
                || i == n - 1;
            if has_attention {
                check_heads(i, l)?;
            }
        }
        Ok(())
    }
}

/// Attention takes any head dim up to 512 (SD's are 40 to 160; diffusers' tiny test U-Nets
/// have 4).
fn check_heads(level: usize, l: &Level) -> std::result::Result<(), String> {
    if l.heads == 0 || !l.channels.is_multiple_of(l.heads) {
        return Err(format!(
            "level {level}: {} channels do not split into {} heads (`attention_head_dim` is the head count in SD configs)",
            l.channels, l.heads
        ));
    }
    let d = l.channels / l.heads;
    if d > crate::ops::attention::MAX_HEAD_DIM {
        return Err(format!(
            "level {level}: head dim {} / {} heads = {d} is not supported (at most {})",
            l.channels,
            l.heads,
            crate::ops::attention::MAX_HEAD_DIM
        ));
    }
    Ok(())
}
