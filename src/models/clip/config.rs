//! `CLIPTextConfig`: the text encoder's config.json under transformers' field names, with
//! transformers 5.23's defaults (`models/clip/configuration_clip.py`) for missing fields, read as
//! every config is (src/io/config.rs: a bad value names its key), and one `validate()` that
//! rejects every value that would change the computation and that revelio does not implement.
//!
//! Fields that do not change the text model's output, accepted and unused:
//! - `projection_dim`: the width of `text_projection`, which only `CLIPTextModelWithProjection`
//!   and `CLIPModel` have (SD 1.x/2.x's `text_encoder/` is a plain `CLIPTextModel`);
//! - `bos_token_id`, `pad_token_id`: the tokenizer's business (the model embeds whatever ids it
//!   gets; padding is not masked: SD feeds the padded 77 tokens through the causal mask);
//! - `attention_dropout`, `dropout`: training only (revelio runs the model in eval mode);
//! - `initializer_range`, `initializer_factor`: initialisation only;
//! - bookkeeping: `transformers_version`, `dtype`/`torch_dtype`, and `_`-prefixed keys such as
//!   `_name_or_path` (`architectures` and `model_type` are read: they must name the text model).
//!
//! Any other key is named in a warning on stderr.

use crate::config_fields;
use crate::io::config::{read_config, unknown_keys};
use crate::ops::Unary;
use crate::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// Keys of config.json that do not change the computation (see the module doc).
const KNOWN_UNUSED: &[&str] = &[
    "projection_dim",
    "bos_token_id",
    "pad_token_id",
    "attention_dropout",
    "dropout",
    "initializer_range",
    "initializer_factor",
    "transformers_version",
    "dtype",
    "torch_dtype",
];

/// hidden_size / num_attention_heads must be whole and at most what revelio's attention takes.
pub(crate) fn check_head_dim(hidden_size: usize, heads: usize) -> std::result::Result<(), String> {
    if !hidden_size.is_multiple_of(heads) {
        return Err(format!("hidden_size {hidden_size} is not a multiple of num_attention_heads {heads}"));
    }
    let d = hidden_size / heads;
    if d > crate::ops::attention::MAX_HEAD_DIM {
        return Err(format!(
            "head dim hidden_size / num_attention_heads = {hidden_size} / {heads} = {d} is not supported \
             (revelio's attention takes up to {})",
            crate::ops::attention::MAX_HEAD_DIM
        ));
    }
    Ok(())
}

/// The activation of the MLP (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenAct {
    /// `quick_gelu`: x * sigmoid(1.702 x), OpenAI CLIP (SD 1.x).
    QuickGelu,
    /// `gelu`: the exact erf GELU, OpenCLIP (SD 2.x).
    Gelu,
    /// `gelu_pytorch_tanh` or `gelu_new`: the tanh approximation.
    GeluTanh,
}

impl HiddenAct {
    pub fn parse(name: &str) -> Option<HiddenAct> {
        match name {
            "quick_gelu" => Some(HiddenAct::QuickGelu),
            "gelu" => Some(HiddenAct::Gelu),
            "gelu_pytorch_tanh" | "gelu_new" => Some(HiddenAct::GeluTanh),
            _ => None,
        }
    }

    /// `parse`, or an error naming the tower's config ("CLIP text config") and the value.
    pub fn parse_for(config: &str, name: &str) -> Result<HiddenAct> {
        HiddenAct::parse(name).ok_or_else(|| {
            Error::Unsupported(format!(
                "{config}: hidden_act \"{name}\" is not supported (quick_gelu, gelu, gelu_pytorch_tanh, gelu_new are)"
            ))
        })
    }

    /// The elementwise op that computes it.
    pub fn unary(self) -> Unary {
        match self {
            HiddenAct::QuickGelu => Unary::QuickGelu,
            HiddenAct::Gelu => Unary::Gelu,
            HiddenAct::GeluTanh => Unary::GeluTanh,
        }
    }
}

/// `text_encoder/config.json` (transformers' `CLIPTextConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    /// D, the width of the residual stream.
    pub hidden_size: usize,
    /// The MLP's inner width.
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    /// H; the head dim is hidden_size / H.
    pub num_attention_heads: usize,
    /// The longest input (the rows of the learned position table).
    pub max_position_embeddings: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
    /// Picks the pooled position (see `ClipTextModel::pool_positions`); an integer.
    pub eos_token_id: Value,
    /// "clip_text_model" when given as a string.
    pub model_type: Option<Value>,
    /// Only `CLIPTextModel` when given as a list.
    pub architectures: Option<Value>,
    /// Keys neither read nor known to be irrelevant, in file order.
    unknown: Vec<String>,
}

impl Default for ClipTextConfig {
    /// transformers' defaults (`CLIPTextConfig.__init__`).
    fn default() -> Self {
        ClipTextConfig {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
            eos_token_id: Value::from(49407),
            model_type: None,
            architectures: None,
            unknown: Vec::new(),
        }
    }
}

impl ClipTextConfig {
    /// Reads and validates `path` (a config.json), warning on stderr about keys it does not know.
    pub fn from_file(path: &Path) -> Result<ClipTextConfig> {
        let cfg = ClipTextConfig::parse(&read_config(path, "model")?).map_err(|m| Error::format(path, m))?;
        if !cfg.unknown.is_empty() {
            eprintln!("warning: {}: unknown config key(s) ignored: {}", path.display(), cfg.unknown.join(", "));
        }
        Ok(cfg)
    }

    /// Parses and validates a config given as JSON (no warnings: see `unknown_keys`).
    pub fn from_value(value: &Value) -> Result<ClipTextConfig> {
        let map = value.as_object().ok_or_else(|| Error::BadInput("CLIP text config: expected a JSON object of model settings".into()))?;
        ClipTextConfig::parse(map).map_err(Error::BadInput)
    }

    /// `from_map`, then `validate`.
    fn parse(map: &Map<String, Value>) -> std::result::Result<ClipTextConfig, String> {
        let c = ClipTextConfig::from_map(map).map_err(|m| format!("CLIP text config: {m}"))?;
        c.check()?;
        Ok(c)
    }

    /// Field by field, so that a bad value names its key; notes the unknown keys.
    fn from_map(map: &Map<String, Value>) -> std::result::Result<ClipTextConfig, String> {
        let mut c = ClipTextConfig::default();
        let mut known = config_fields!(map, c;
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            max_position_embeddings,
            hidden_act,
            layer_norm_eps,
            eos_token_id,
            model_type,
            architectures
        );
        known.extend(KNOWN_UNUSED);
        c.unknown = unknown_keys(map, &known);
        Ok(c)
    }

    /// Keys that are neither read nor known to be irrelevant.
    pub fn unknown_keys(&self) -> Vec<String> {
        self.unknown.clone()
    }

    /// The MLP activation (validated).
    pub fn act(&self) -> Result<HiddenAct> {
        HiddenAct::parse_for("CLIP text config", &self.hidden_act)
    }

    /// The EOS id (validated).
    pub fn eos(&self) -> Result<i64> {
        self.eos_token_id.as_i64().ok_or_else(|| {
            Error::Unsupported(format!(
                "CLIP text config: eos_token_id must be one integer (it picks the pooled position), got {}",
                self.eos_token_id
            ))
        })
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Errors naming the field and value for anything revelio cannot compute as transformers does.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(Error::Unsupported)
    }

    fn check(&self) -> std::result::Result<(), String> {
        let bad = |msg: String| Err(format!("CLIP text config: {msg}"));
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if v == 0 {
                return bad(format!("{name} must be positive, got 0"));
            }
        }
        check_head_dim(self.hidden_size, self.num_attention_heads).map_err(|m| format!("CLIP text config: {m}"))?;
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad(format!("layer_norm_eps must be positive and finite, got {}", self.layer_norm_eps));
        }
        self.act().map_err(|e| e.to_string())?;
        self.eos().map_err(|e| e.to_string())?;
        if let Some(Value::String(t)) = &self.model_type {
            if t != "clip_text_model" {
                return bad(format!(
                    "model_type \"{t}\": expected \"clip_text_model\" (a text_encoder/ folder of CLIPTextModel)"
                ));
            }
        }
        if let Some(Value::Array(archs)) = &self.architectures {
            for a in archs {
                if a.as_str() != Some("CLIPTextModel") {
                    return bad(format!("architectures {a}: only CLIPTextModel is implemented (no projection head)"));
                }
            }
        }
        Ok(())
    }

    /// SD 1.x's text_encoder/config.json (openai/clip-vit-large-patch14's text tower).
    pub fn sd15() -> Value {
        serde_json::json!({
            "architectures": ["CLIPTextModel"],
            "attention_dropout": 0.0,
            "bos_token_id": 0,
            "dropout": 0.0,
            "eos_token_id": 2,
            "hidden_act": "quick_gelu",
            "hidden_size": 768,
            "initializer_factor": 1.0,
            "initializer_range": 0.02,
            "intermediate_size": 3072,
            "layer_norm_eps": 1e-05,
            "max_position_embeddings": 77,
            "model_type": "clip_text_model",
            "num_attention_heads": 12,
            "num_hidden_layers": 12,
            "pad_token_id": 1,
            "projection_dim": 768,
            "torch_dtype": "float32",
            "vocab_size": 49408
        })
    }

    /// SD 2.x's text_encoder/config.json (OpenCLIP ViT-H/14's text tower without its last layer:
    /// 23 of 24; see `ClipSkip`).
    pub fn sd21() -> Value {
        serde_json::json!({
            "architectures": ["CLIPTextModel"],
            "attention_dropout": 0.0,
            "bos_token_id": 0,
            "dropout": 0.0,
            "eos_token_id": 2,
            "hidden_act": "gelu",
            "hidden_size": 1024,
            "initializer_factor": 1.0,
            "initializer_range": 0.02,
            "intermediate_size": 4096,
            "layer_norm_eps": 1e-05,
            "max_position_embeddings": 77,
            "model_type": "clip_text_model",
            "num_attention_heads": 16,
            "num_hidden_layers": 23,
            "pad_token_id": 1,
            "projection_dim": 512,
            "torch_dtype": "float32",
            "vocab_size": 49408
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_configs_validate() {
        let c = ClipTextConfig::from_value(&ClipTextConfig::sd15()).unwrap();
        assert_eq!((c.head_dim(), c.act().unwrap(), c.eos().unwrap()), (64, HiddenAct::QuickGelu, 2));
        assert!(c.unknown_keys().is_empty());
        let c = ClipTextConfig::from_value(&ClipTextConfig::sd21()).unwrap();
        assert_eq!((c.head_dim(), c.act().unwrap(), c.num_hidden_layers), (64, HiddenAct::Gelu, 23));
    }

    #[test]
    fn defaults_are_transformers() {
        let c = ClipTextConfig::from_value(&serde_json::json!({})).unwrap();
        assert_eq!(
            (c.vocab_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads),
            (49408, 512, 2048, 12, 8)
        );
        assert_eq!((c.max_position_embeddings, c.hidden_act.as_str(), c.eos().unwrap()), (77, "quick_gelu", 49407));
    }

    #[test]
    fn rejects_what_it_cannot_compute() {
        let with = |k: &str, v: Value| {
            let mut j = ClipTextConfig::sd15();
            j[k] = v;
            ClipTextConfig::from_value(&j).map(|_| ()).unwrap_err().to_string()
        };
        assert!(with("hidden_act", "relu".into()).contains("hidden_act \"relu\""));
        assert!(with("num_attention_heads", 7.into()).contains("num_attention_heads 7"));
        assert!(with("num_attention_heads", 1.into()).contains("= 768"));
        assert!(with("eos_token_id", serde_json::json!([2, 3])).contains("eos_token_id"));
        assert!(with("eos_token_id", Value::Null).contains("eos_token_id"));
        assert!(with("layer_norm_eps", 0.into()).contains("layer_norm_eps"));
        assert!(with("num_hidden_layers", 0.into()).contains("num_hidden_layers"));
        assert!(with("model_type", "clip".into()).contains("model_type \"clip\""));
        assert!(with("architectures", serde_json::json!(["CLIPTextModelWithProjection"])).contains("CLIPTextModelWithProjection"));
    }

    #[test]
    fn unknown_keys_are_listed() {
        let mut j = ClipTextConfig::sd15();
        j["rope_theta"] = 1.0.into();
        let c = ClipTextConfig::from_value(&j).unwrap();
        assert_eq!(c.unknown_keys(), vec!["rope_theta".to_string()]);
    }
}
