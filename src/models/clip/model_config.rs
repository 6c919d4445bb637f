//! The configs of a transformers `CLIPModel` folder: `CLIPVisionConfig` (the vision tower) and
//! `CLIPConfig` (config.json: `text_config`, `vision_config`, `projection_dim`), under
//! transformers' field names with transformers 5.25's defaults
//! (`models/clip/configuration_clip.py`), read as every config is (src/io/config.rs: a bad value
//! names its key), each with one check that rejects what revelio does not compute.
//!
//! Fields that do not change the outputs, accepted and unused: `attention_dropout`, `dropout`
//! (training only), `initializer_range`, `initializer_factor`, `logit_scale_init_value`
//! (initialisation only: the logit scale is read from the weights), a tower's own
//! `projection_dim` (the CLIPModel's one sizes both projections), and bookkeeping
//! (`transformers_version`, `dtype`/`torch_dtype`, `_`-prefixed keys).

use super::config::{check_head_dim, ClipTextConfig, HiddenAct};
use crate::config_fields;
use crate::io::config::{read_config, unknown_keys};
use crate::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

const KNOWN_UNUSED: &[&str] = &[
    "attention_dropout",
    "dropout",
    "initializer_range",
    "initializer_factor",
    "logit_scale_init_value",
    "projection_dim",
    "transformers_version",
    "dtype",
    "torch_dtype",
];

/// `vision_config` (transformers' `CLIPVisionConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipVisionConfig {
    /// Dv, the width of the residual stream.
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Input channels of the patch embedding (3).
    pub num_channels: usize,
    /// R: the input is R x R pixels.
    pub image_size: usize,
    /// P: R / P patches per side.
    pub patch_size: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
    /// "clip_vision_model" when given as a string.
    pub model_type: Option<Value>,
    unknown: Vec<String>,
}

impl Default for ClipVisionConfig {
    /// transformers' defaults (`CLIPVisionConfig.__init__`: ViT-B/32).
    fn default() -> Self {
        ClipVisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
            model_type: None,
            unknown: Vec::new(),
        }
    }
}

impl ClipVisionConfig {
    fn from_map(map: &Map<String, Value>) -> std::result::Result<ClipVisionConfig, String> {
        let mut c = ClipVisionConfig::default();
        let mut known = config_fields!(map, c;
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_channels,
            image_size,
            patch_size,
            hidden_act,
            layer_norm_eps,
            model_type
        );
        known.extend(KNOWN_UNUSED);
        c.unknown = unknown_keys(map, &known);
        c.check()?;
        Ok(c)
    }

    /// Patches per side, R / P.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size.max(1)
    }

    /// Tokens: the class token and one per patch, 1 + (R / P)^2.
    pub fn tokens(&self) -> usize {
        1 + self.grid() * self.grid()
    }

    /// The MLP activation (validated).
    pub fn act(&self) -> Result<HiddenAct> {
        HiddenAct::parse_for("CLIP vision config", &self.hidden_act)
    }

    /// Errors naming the field and value for anything revelio cannot compute as transformers does.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(Error::Unsupported)
    }

    fn check(&self) -> std::result::Result<(), String> {
        let bad = |msg: String| Err(format!("CLIP vision config: {msg}"));
        for (name, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_channels", self.num_channels),
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
        ] {
            if v == 0 {
                return bad(format!("{name} must be positive, got 0"));
            }
        }
        if !self.image_size.is_multiple_of(self.patch_size) {
            return bad(format!(
                "image_size {} is not a multiple of patch_size {}",
                self.image_size, self.patch_size
            ));
        }
        check_head_dim(self.hidden_size, self.num_attention_heads)
            .map_err(|m| format!("CLIP vision config: {m}"))?;
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad(format!(
                "layer_norm_eps must be positive and finite, got {}",
                self.layer_norm_eps
            ));
        }
        self.act().map_err(|e| e.to_string())?;
        if let Some(Value::String(t)) = &self.model_type {
            if t != "clip_vision_model" {
                return bad(format!(
                    "model_type \"{t}\": expected \"clip_vision_model\""
                ));
            }
        }
        Ok(())
    }
}

/// A CLIPModel folder's config.json (transformers' `CLIPConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub text_config: ClipTextConfig,
    pub vision_config: ClipVisionConfig,
    /// E, the width of the joint embedding (both projections' outputs).
    pub projection_dim: usize,
    /// Keys neither read nor known to be irrelevant, `text_config.` / `vision_config.` prefixed
    /// for the towers' ones.
    unknown: Vec<String>,
}

impl ClipConfig {
    /// Reads and validates `path` (a CLIPModel config.json), warning on stderr about keys it does
    /// not know.
    pub fn from_file(path: &Path) -> Result<ClipConfig> {
        let cfg = ClipConfig::parse(&read_config(path, "CLIP model")?)
            .map_err(|m| Error::format(path, m))?;
        if !cfg.unknown.is_empty() {
            eprintln!(
                "warning: {}: unknown config key(s) ignored: {}",
                path.display(),
                cfg.unknown.join(", ")
            );
        }
        Ok(cfg)
    }

    fn parse(map: &Map<String, Value>) -> std::result::Result<ClipConfig, String> {
        if let Some(t) = map.get("model_type").and_then(Value::as_str) {
            if t != "clip" {
                return Err(format!(
                    "model_type \"{t}\": expected \"clip\" (a transformers CLIPModel folder)"
                ));
            }
        }
        if let Some(Value::Array(archs)) = map.get("architectures") {
            if let Some(a) = archs.iter().find(|a| a.as_str() != Some("CLIPModel")) {
                return Err(format!(
                    "architectures {a}: expected CLIPModel (both towers and their projections)"
                ));
            }
        }
        let tower = |key: &str| -> std::result::Result<&Map<String, Value>, String> {
            map.get(key)
                .ok_or_else(|| format!("`{key}` is missing: a CLIPModel config.json holds text_config and vision_config"))?
                .as_object()
                .ok_or_else(|| format!("`{key}` must be a JSON object of settings"))
        };
        let text_config = ClipTextConfig::from_value(&Value::Object(tower("text_config")?.clone()))
            .map_err(|e| format!("text_config: {e}"))?;
        let vision_config = ClipVisionConfig::from_map(tower("vision_config")?)
            .map_err(|e| format!("vision_config: {e}"))?;
        let mut projection_dim = 512usize;
        crate::io::config::field(map, "projection_dim", &mut projection_dim)?;
        if projection_dim == 0 {
            return Err("projection_dim must be positive, got 0".into());
        }
        let known = [
            "text_config",
            "vision_config",
            "projection_dim",
            "model_type",
            "architectures",
        ];
        let mut unknown: Vec<String> = unknown_keys(map, &known)
            .into_iter()
            .filter(|k| !KNOWN_UNUSED.contains(&k.as_str()))
            .collect();
        unknown.extend(
            text_config
                .unknown_keys()
                .into_iter()
                .map(|k| format!("text_config.{k}")),
        );
        unknown.extend(
            vision_config
                .unknown
                .iter()
                .map(|k| format!("vision_config.{k}")),
        );
        Ok(ClipConfig {
            text_config,
            vision_config,
            projection_dim,
            unknown,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> std::result::Result<ClipConfig, String> {
        ClipConfig::parse(v.as_object().unwrap())
    }

    #[test]
    fn defaults_are_vit_b32() {
        let c = parse(json!({"text_config": {}, "vision_config": {}})).unwrap();
        let v = &c.vision_config;
        assert_eq!(
            (
                v.hidden_size,
                v.num_hidden_layers,
                v.image_size,
                v.patch_size,
                v.tokens()
            ),
            (768, 12, 224, 32, 50)
        );
        assert_eq!((c.projection_dim, c.text_config.hidden_size), (512, 512));
    }

    #[test]
    fn rejects_what_it_cannot_compute() {
        let err = |v: Value| parse(v).unwrap_err();
        assert!(err(json!({"vision_config": {}})).contains("`text_config` is missing"));
        assert!(err(
            json!({"text_config": {}, "vision_config": {"image_size": 30, "patch_size": 7}})
        )
        .contains("patch_size 7"));
        assert!(
            err(json!({"text_config": {}, "vision_config": {"hidden_act": "relu"}}))
                .contains("vision_config: CLIP vision config: hidden_act")
        );
        assert!(
            err(json!({"text_config": {}, "vision_config": {}, "model_type": "siglip"}))
                .contains("siglip")
        );
        assert!(
            err(json!({"text_config": {"num_attention_heads": 5}, "vision_config": {}}))
                .contains("text_config")
        );
        assert!(
            err(json!({"text_config": {}, "vision_config": {"patch_size": "8"}}))
                .contains("patch_size")
        );
    }

    #[test]
    fn unknown_keys_are_named_with_their_tower() {
        let c =
            parse(json!({"text_config": {"rope": 1}, "vision_config": {"rope": 2}, "extra": 3}))
                .unwrap();
        assert_eq!(
            c.unknown,
            ["extra", "text_config.rope", "vision_config.rope"]
        );
    }
}
