//! `config.json` of a diffusers `AutoencoderKL` under diffusers' field names and defaults
//! (diffusers 0.42 `models/autoencoders/autoencoder_kl.py`, `__init__`), read as every config is
//! (src/io/config.rs).

use crate::config_fields;
use crate::io::config::{check_class, config_object, must_be_null, parse_config, read_config, warn_unknown};
use crate::Result;
use serde_json::{Map, Value};
use std::path::Path;

/// The VAE's config. `sample_size` (tiling only) and `force_upcast` are read and ignored:
/// `force_upcast` tells diffusers' pipelines to run an f16 VAE in f32 (SD's VAE overflows in
/// f16 at high resolution); here the VAE runs in the dtype it is loaded in, so load it in f32
/// or bf16 when that matters.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoencoderKLConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub act_fn: String,
    pub latent_channels: usize,
    pub norm_num_groups: usize,
    /// latents = scaling_factor * posterior sample (0.18215 for SD 1.x/2.x).
    pub scaling_factor: f64,
    pub shift_factor: Option<Value>,
    pub latents_mean: Option<Value>,
    pub latents_std: Option<Value>,
    pub use_quant_conv: bool,
    pub use_post_quant_conv: bool,
    pub mid_block_add_attention: bool,
}

impl Default for AutoencoderKLConfig {
    /// diffusers' defaults (a one-level toy VAE; SD's config sets every size).
    fn default() -> Self {
        AutoencoderKLConfig {
            in_channels: 3,
            out_channels: 3,
            down_block_types: vec!["DownEncoderBlock2D".into()],
            up_block_types: vec!["UpDecoderBlock2D".into()],
            block_out_channels: vec![64],
            layers_per_block: 1,
            act_fn: "silu".into(),
            latent_channels: 4,
            norm_num_groups: 32,
            scaling_factor: 0.18215,
            shift_factor: None,
            latents_mean: None,
            latents_std: None,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
        }
    }
}

impl AutoencoderKLConfig {
    /// Reads and validates `config.json` (an AutoencoderKL's).
    pub fn from_file(path: &Path) -> Result<Self> {
        parse_config(path, &read_config(path, "model")?, Self::from_map, Self::validate)
    }

    /// Parses and validates a config given as JSON (e.g. a single-file checkpoint's inferred
    /// config); `source` names it in messages.
    pub fn from_value(source: &Path, value: &Value) -> Result<Self> {
        parse_config(source, config_object(source, value, "VAE")?, Self::from_map, Self::validate)
    }

    fn from_map(path: &Path, map: &Map<String, Value>) -> std::result::Result<Self, String> {
        check_class(map, "AutoencoderKL")?;
        let mut c = AutoencoderKLConfig::default();
        let mut known = config_fields!(map, c;
            in_channels,
            out_channels,
            down_block_types,
            up_block_types,
            block_out_channels,
            layers_per_block,
            act_fn,
            latent_channels,
            norm_num_groups,
            scaling_factor,
            shift_factor,
            latents_mean,
            latents_std,
            use_quant_conv,
            use_post_quant_conv,
            mid_block_add_attention
        );
        known.extend(["sample_size", "force_upcast"]);
        warn_unknown(path, map, &known);
        Ok(c)
    }

    /// Rejects what we do not implement, naming the field and its value.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let n = self.block_out_channels.len();
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
        if let Some(t) = self.down_block_types.iter().find(|t| *t != "DownEncoderBlock2D") {
            return Err(format!("down block type {t:?} is not supported (only DownEncoderBlock2D)"));
        }
        if let Some(t) = self.up_block_types.iter().find(|t| *t != "UpDecoderBlock2D") {
            return Err(format!("up block type {t:?} is not supported (only UpDecoderBlock2D)"));
        }
        if self.act_fn != "silu" && self.act_fn != "swish" {
            return Err(format!("`act_fn` = {:?} is not supported (only \"silu\")", self.act_fn));
        }
        must_be_null("shift_factor", &self.shift_factor, "SD VAEs only scale their latents")?;
        must_be_null("latents_mean", &self.latents_mean, "SD VAEs do not normalise latents per channel")?;
        must_be_null("latents_std", &self.latents_std, "SD VAEs do not normalise latents per channel")?;
        if self.layers_per_block == 0 {
            return Err("`layers_per_block` must be at least 1".into());
        }
        if !(self.scaling_factor.is_finite() && self.scaling_factor != 0.0) {
            return Err(format!("`scaling_factor` = {} must be finite and nonzero", self.scaling_factor));
        }
        let g = self.norm_num_groups;
        if let Some(c) = self.block_out_channels.iter().find(|&&c| g == 0 || c % g != 0) {
            return Err(format!("`block_out_channels` entry {c} does not split into `norm_num_groups` = {g} groups"));
        }
        let last = self.block_out_channels[n - 1];
        if self.mid_block_add_attention && last > crate::ops::attention::MAX_HEAD_DIM {
            return Err(format!(
                "the mid-block attention has one head of dim {last} (the last `block_out_channels` entry): not supported \
                 (at most {})",
                crate::ops::attention::MAX_HEAD_DIM
            ));
        }
        Ok(())
    }
}
