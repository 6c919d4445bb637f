//! DiT's config under diffusers' `DiTTransformer2DModel` field names (diffusers 0.42
//! `models/transformers/dit_transformer_2d.py:71-90`), read from `config.json`, built from a
//! DiT family preset (`XL/2-256`), or inferred from an original checkpoint's tensor shapes.
//!
//! The Hub's `facebook/DiT-XL-2-256` and `-512` folders were written by diffusers 0.12 as
//! `Transformer2DModel` with `norm_type: "ada_norm_zero"`; diffusers loads them as
//! `DiTTransformer2DModel` (`models/model_loading_utils.py:53` `_CLASS_REMAPPING_DICT`), and so do
//! we: both class names are accepted, and the extra `Transformer2DModel` keys must hold values
//! that mean "no cross-attention, patched input".

use crate::config_fields;
use crate::io::config::{parse_config, read_config, warn_unknown};
use crate::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// The fields of `DiTTransformer2DModel.__init__`; a missing field takes diffusers' default.
#[derive(Debug, Clone, PartialEq)]
pub struct DiTConfig {
    pub num_attention_heads: usize,
    /// Channels per head (unlike UNet2DConditionModel's quirk, really the head dim here).
    pub attention_head_dim: usize,
    pub in_channels: usize,
    /// None: in_channels (diffusers); DiT's learned sigma makes it 2 * in_channels = 8.
    pub out_channels: Option<usize>,
    pub num_layers: usize,
    /// Training only: no effect on inference.
    pub dropout: f64,
    /// Unused by DiT (no group norm anywhere).
    pub norm_num_groups: usize,
    /// Bias on to_q, to_k, to_v (to_out always has one).
    pub attention_bias: bool,
    /// Latent height and width the model was trained at (32 for 256 px, 64 for 512 px).
    pub sample_size: usize,
    pub patch_size: usize,
    pub activation_fn: String,
    /// The number of classes; the label table has one more row, the null class (id = this).
    pub num_embeds_ada_norm: Option<usize>,
    /// Attention in f32: what our kernels always do, so either value computes the same.
    pub upcast_attention: bool,
    pub norm_type: String,
    /// norm3 (the LayerNorm before the MLP) has a weight and bias.
    pub norm_elementwise_affine: bool,
    /// eps of norm3 only: norm1 and norm_out use 1e-6 whatever this says (diffusers
    /// `normalization.py:149`, `dit_transformer_2d.py:142`).
    pub norm_eps: f64,
}

impl Default for DiTConfig {
    /// diffusers' defaults: DiT-XL/2 at 256 px, except out_channels (None there, 8 in every
    /// released DiT config).
    fn default() -> Self {
        DiTConfig {
            num_attention_heads: 16,
            attention_head_dim: 72,
            in_channels: 4,
            out_channels: None,
            num_layers: 28,
            dropout: 0.0,
            norm_num_groups: 32,
            attention_bias: true,
            sample_size: 32,
            patch_size: 2,
            activation_fn: "gelu-approximate".into(),
            num_embeds_ada_norm: Some(1000),
            upcast_attention: false,
            norm_type: "ada_norm_zero".into(),
            norm_elementwise_affine: false,
            norm_eps: 1e-5,
        }
    }
}

/// DiT family widths: (name, depth, hidden size, heads), facebookresearch/DiT `models.py`
/// `DiT_S_2` .. `DiT_XL_8`.
const FAMILY: [(&str, usize, usize, usize); 4] = [("S", 12, 384, 6), ("B", 12, 768, 12), ("L", 24, 1024, 16), ("XL", 28, 1152, 16)];

impl DiTConfig {
    /// Reads a diffusers `config.json` (`DiTTransformer2DModel`, or the Hub's older
    /// `Transformer2DModel` with `norm_type: "ada_norm_zero"`), then validates it.
    pub fn from_file(path: &Path) -> Result<Self> {
        parse_config(path, &read_config(path, "model")?, Self::from_map, Self::validate)
    }

    /// The config of a parsed JSON object, field by field so that a bad value is named; keys it
    /// does not know are named in a warning that names `source`.
    pub fn from_map(source: &Path, map: &Map<String, Value>) -> std::result::Result<Self, String> {
        match map.get("_class_name").and_then(Value::as_str) {
            None | Some("DiTTransformer2DModel") | Some("Transformer2DModel") => {}
            Some(other) => {
                return Err(format!("`_class_name` is {other:?}: not a DiT (DiTTransformer2DModel, or Transformer2DModel with ada_norm_zero)"))
            }
        }
        let mut c = DiTConfig::default();
        let mut known = config_fields!(map, c;
            num_attention_heads,
            attention_head_dim,
            in_channels,
            out_channels,
            num_layers,
            dropout,
            norm_num_groups,
            attention_bias,
            sample_size,
            patch_size,
            activation_fn,
            num_embeds_ada_norm,
            upcast_attention,
            norm_type,
            norm_elementwise_affine,
            norm_eps
        );
        check_legacy_keys(map)?;
        known.extend(LEGACY_KEYS.iter().map(|(k, _)| *k));
        warn_unknown(source, map, &known);
        Ok(c)
    }

    /// Rejects what we do not implement (or what diffusers rejects), naming the field and value.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.norm_type != "ada_norm_zero" {
            return Err(format!("norm_type {:?} is not DiT's: only \"ada_norm_zero\" is supported", self.norm_type));
        }
        match self.num_embeds_ada_norm {
            None => return Err("num_embeds_ada_norm is null: DiT needs a class count (1000 for ImageNet)".into()),
            Some(0) => return Err("num_embeds_ada_norm is 0: DiT needs at least one class".into()),
            Some(_) => {}
        }
        if self.activation_fn != "gelu-approximate" {
            return Err(format!("activation_fn {:?} is not supported: DiT's MLP uses \"gelu-approximate\" (tanh GELU)", self.activation_fn));
        }
        let positive = [
            ("num_attention_heads", self.num_attention_heads),
            ("attention_head_dim", self.attention_head_dim),
            ("in_channels", self.in_channels),
            ("num_layers", self.num_layers),
            ("patch_size", self.patch_size),
            ("sample_size", self.sample_size),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} is 0: must be at least 1"));
        }
        if self.out_channels == Some(0) {
            return Err("out_channels is 0: must be at least 1 (or null for in_channels)".into());
        }
        let d = self.attention_head_dim;
        if d == 0 || d > crate::ops::attention::MAX_HEAD_DIM {
            return Err(format!(
                "attention_head_dim {d} is not supported: attention takes head dims from 1 to {}",
                crate::ops::attention::MAX_HEAD_DIM
            ));
        }
        if !self.inner_dim().is_multiple_of(4) {
            return Err(format!(
                "num_attention_heads * attention_head_dim = {} must be a multiple of 4 (the 2D sin-cos position embedding)",
                self.inner_dim()
            ));
        }
        if !self.sample_size.is_multiple_of(self.patch_size) {
            return Err(format!("sample_size {} is not a multiple of patch_size {}", self.sample_size, self.patch_size));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(format!("norm_eps {} must be positive and finite", self.norm_eps));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout {} must lie in [0, 1)", self.dropout));
        }
        Ok(())
    }

    /// Width of the token stream: heads * head dim.
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    /// Output channels: `out_channels`, or in_channels when null.
    pub fn out_channels(&self) -> usize {
        self.out_channels.unwrap_or(self.in_channels)
    }

    /// Number of real classes; the null class (classifier-free guidance) has this id.
    pub fn num_classes(&self) -> usize {
        self.num_embeds_ada_norm.unwrap_or(0)
    }

    /// A DiT family member at an image size: `model` is "S/2" .. "XL/8" (also written "DiT-XL/2",
    /// "xl2", "XL-2"), `image_size` 256 or 512 (sample_size = image_size / 8, the VAE's factor).
    /// Learned sigma (out_channels 8) and 1000 ImageNet classes, as every released DiT.
    pub fn preset(model: &str, image_size: usize) -> Result<Self> {
        let bad = || {
            Error::BadOption(format!(
                "unknown DiT preset {model:?}: expected S, B, L or XL with patch 2, 4 or 8, e.g. \"XL/2\" (DiT-XL/2)"
            ))
        };
        let norm: String = model.trim_start_matches("DiT-").chars().filter(|c| !matches!(c, '/' | '-' | '_')).collect();
        let norm = norm.to_ascii_uppercase();
        let split = norm.find(|c: char| c.is_ascii_digit()).ok_or_else(bad)?;
        let (size, patch) = norm.split_at(split);
        let patch: usize = patch.parse().map_err(|_| bad())?;
        let &(_, depth, hidden, heads) = FAMILY.iter().find(|f| f.0 == size).ok_or_else(bad)?;
        if ![2, 4, 8].contains(&patch) {
            return Err(bad());
        }
        if image_size == 0 || !image_size.is_multiple_of(8 * patch) {
            return Err(Error::BadOption(format!(
                "image size {image_size} for DiT {model}: must be a multiple of 8 * patch = {}",
                8 * patch
            )));
        }
        Ok(DiTConfig {
            num_attention_heads: heads,
            attention_head_dim: hidden / heads,
            num_layers: depth,
            patch_size: patch,
            sample_size: image_size / 8,
            out_channels: Some(8),
            ..DiTConfig::default()
        })
    }

    /// The config of an original facebookresearch/DiT checkpoint, from its tensor shapes:
    /// `shape_of(original key)` gives a tensor's dims. Width, input channels and patch size
    /// come from `x_embedder.proj.weight` [D, C, p, p], output channels from
    /// `final_layer.linear.weight` [p*p*out, D], classes from `y_embedder.embedding_table.weight`
    /// [classes + 1, D], depth from the `blocks.N` count, the latent size from `pos_embed`
    /// [1, (sample/p)^2, D], and the head count from the DiT family (S 6, B 12, L and XL 16):
    /// another width needs a config.json. The rest is what diffusers' conversion of the released
    /// checkpoints writes (norm_eps 1e-5 for norm3: see docs/dit.md).
    pub fn infer_original(shape_of: impl Fn(&str) -> Option<Vec<usize>>) -> std::result::Result<Self, String> {
        let need = |key: &str, rank: usize| -> std::result::Result<Vec<usize>, String> {
            let dims = shape_of(key).ok_or_else(|| format!("no `{key}`: not an original DiT checkpoint"))?;
            if dims.len() != rank {
                return Err(format!("`{key}` has shape {dims:?}, expected rank {rank}"));
            }
            Ok(dims)
        };
        let x = need("x_embedder.proj.weight", 4)?;
        let (hidden, in_channels, p) = (x[0], x[1], x[2]);
        if x[3] != p {
            return Err(format!("`x_embedder.proj.weight` has shape {x:?}: the patch must be square"));
        }
        let lin = need("final_layer.linear.weight", 2)?;
        if p == 0 || lin[0] % (p * p) != 0 {
            return Err(format!("`final_layer.linear.weight` has shape {lin:?}: {} outputs are not patch^2 * channels", lin[0]));
        }
        let classes = need("y_embedder.embedding_table.weight", 2)?[0];
        if classes < 2 {
            return Err(format!("`y_embedder.embedding_table.weight` has {classes} rows: expected the classes plus the null class"));
        }
        let depth = (0..).take_while(|n| shape_of(&format!("blocks.{n}.attn.qkv.weight")).is_some()).count();
        let pos = need("pos_embed", 3).map_err(|e| format!("{e} (it gives the latent size; without it, put a config.json beside the file)"))?;
        let grid = (pos[1] as f64).sqrt().round() as usize;
        if grid * grid != pos[1] {
            return Err(format!("`pos_embed` has shape {pos:?}: {} tokens are not a square grid", pos[1]));
        }
        let heads = FAMILY.iter().find(|f| f.2 == hidden).map(|f| f.3).ok_or_else(|| {
            format!("width {hidden} is not a DiT-S/B/L/XL width, so the head count is unknown: put a config.json (diffusers names) beside the checkpoint")
        })?;
        Ok(DiTConfig {
            num_attention_heads: heads,
            attention_head_dim: hidden / heads,
            in_channels,
            out_channels: Some(lin[0] / (p * p)),
            num_layers: depth,
            sample_size: grid * p,
            patch_size: p,
            num_embeds_ada_norm: Some(classes - 1),
            ..DiTConfig::default()
        })
    }
}

/// `Transformer2DModel` keys of the Hub's DiT configs, with the values that mean a plain DiT.
/// `None` means "any value" (irrelevant to patched input).
const LEGACY_KEYS: [(&str, Option<Value>); 7] = [
    ("cross_attention_dim", Some(Value::Null)),
    ("num_vector_embeds", Some(Value::Null)),
    ("only_cross_attention", Some(Value::Bool(false))),
    ("double_self_attention", Some(Value::Bool(false))),
    ("caption_channels", Some(Value::Null)),
    ("use_linear_projection", None),
    ("attention_type", None),
];

/// The `Transformer2DModel` keys must describe DiT: no cross-attention, no vector input, the
/// default attention type, and no interpolation scale but 1 (diffusers' DiT class ignores it).
fn check_legacy_keys(map: &Map<String, Value>) -> std::result::Result<(), String> {
    for (key, want) in &LEGACY_KEYS {
        if let (Some(v), Some(want)) = (map.get(*key), want) {
            if v != want {
                return Err(format!("`{key}` = {v}: DiT has no such part (expected {want})"));
            }
        }
    }
    if let Some(v) = map.get("attention_type") {
        if v.as_str() != Some("default") {
            return Err(format!("`attention_type` = {v}: only \"default\" is supported"));
        }
    }
    if let Some(v) = map.get("interpolation_scale") {
        if !(v.is_null() || v.as_f64() == Some(1.0)) {
            return Err(format!(
                "`interpolation_scale` = {v}: diffusers' DiTTransformer2DModel always uses 1 (its PatchEmbed default) and ignores this key; remove it or set it to 1"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_match_the_released_configs() {
        // facebook/DiT-XL-2-256 and -512 transformer/config.json (diffusers' conversion).
        let xl = DiTConfig::preset("DiT-XL/2", 256).unwrap();
        assert_eq!((xl.num_attention_heads, xl.attention_head_dim, xl.num_layers), (16, 72, 28));
        assert_eq!((xl.sample_size, xl.patch_size, xl.out_channels(), xl.num_classes()), (32, 2, 8, 1000));
        assert_eq!(DiTConfig::preset("xl2", 512).unwrap().sample_size, 64);
        let s = DiTConfig::preset("S/8", 256).unwrap();
        assert_eq!((s.num_attention_heads, s.attention_head_dim, s.num_layers, s.patch_size), (6, 64, 12, 8));
        assert!(DiTConfig::preset("M/2", 256).is_err());
        assert!(DiTConfig::preset("XL/3", 256).is_err());
        assert!(DiTConfig::preset("XL/8", 100).is_err());
        for f in FAMILY {
            for p in [2, 4, 8] {
                DiTConfig::preset(&format!("{}/{p}", f.0), 256).unwrap().validate().unwrap();
            }
        }
    }

    #[test]
    fn infers_xl2_from_original_shapes() {
        let shapes = |k: &str| -> Option<Vec<usize>> {
            let n = k.strip_prefix("blocks.").and_then(|r| r.split('.').next()).and_then(|n| n.parse::<usize>().ok());
            match k {
                "x_embedder.proj.weight" => Some(vec![1152, 4, 2, 2]),
                "final_layer.linear.weight" => Some(vec![32, 1152]),
                "y_embedder.embedding_table.weight" => Some(vec![1001, 1152]),
                "pos_embed" => Some(vec![1, 1024, 1152]),
                _ if n.is_some_and(|n| n < 28) => Some(vec![3456, 1152]),
                _ => None,
            }
        };
        let c = DiTConfig::infer_original(shapes).unwrap();
        assert_eq!(c, DiTConfig::preset("XL/2", 512).unwrap());
        let no_pos = |k: &str| if k == "pos_embed" { None } else { shapes(k) };
        assert!(DiTConfig::infer_original(no_pos).unwrap_err().contains("config.json"));
    }

    #[test]
    fn rejects_what_changes_the_computation() {
        let bad = [
            r#"{"norm_type": "ada_norm"}"#,
            r#"{"activation_fn": "geglu"}"#,
            r#"{"num_embeds_ada_norm": null}"#,
            r#"{"attention_head_dim": 0}"#,
            r#"{"_class_name": "UNet2DConditionModel"}"#,
            r#"{"cross_attention_dim": 768}"#,
            r#"{"interpolation_scale": 2}"#,
            r#"{"sample_size": 33}"#,
            r#"{"num_layers": 0}"#,
        ];
        let source = Path::new("config.json");
        for text in bad {
            let map: Map<String, Value> = serde_json::from_str(text).unwrap();
            let res = DiTConfig::from_map(source, &map).and_then(|c| c.validate());
            assert!(res.is_err(), "{text} was accepted");
        }
        let map: Map<String, Value> =
            serde_json::from_str(r#"{"_class_name": "Transformer2DModel", "use_linear_projection": false, "foo": 1}"#).unwrap();
        DiTConfig::from_map(source, &map).unwrap().validate().unwrap();
    }
}
