//! `CLIPTextConfig`: the text encoder's config.json under transformers' field names, with
//! transformers 5.23's defaults (`models/clip/configuration_clip.py`) for missing fields, and one
//! `validate()` that rejects every value that would change the computation and that revelio
//! does not implement.
//!
//! Fields that do not change the text model's output, accepted and unused:
//! - `projection_dim`: the width of `text_projection`, which only `CLIPTextModelWithProjection`
//!   and `CLIPModel` have (SD 1.x/2.x's `text_encoder/` is a plain `CLIPTextModel`);
//! - `bos_token_id`, `pad_token_id`: the tokenizer's business (the model embeds whatever ids it
//!   gets; padding is not masked: SD feeds the padded 77 tokens through the causal mask);
//! - `attention_dropout`, `dropout`: training only (revelio runs the model in eval mode);
//! - `initializer_range`, `initializer_factor`: initialisation only;
//! - bookkeeping: `architectures`, `model_type`, `transformers_version`, `dtype`/`torch_dtype`,
//!   `_name_or_path`.
//!
//! Any other key is named in a warning on stderr.

use crate::ops::Unary;
use crate::{Error, Result};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The largest and the required multiple of the head dim: revelio's attention op takes head
/// dims that are multiples of 8 up to 512 (CLIP's are 64).
const HEAD_DIM_MULTIPLE: usize = 8;

/// Keys of config.json that do not change the computation (see the module doc).
const KNOWN_UNUSED: &[&str] = &[
    "projection_dim",
    "bos_token_id",
    "pad_token_id",
    "attention_dropout",
    "dropout",
    "initializer_range",
    "initializer_factor",
    "architectures",
    "model_type",
    "transformers_version",
    "dtype",
    "torch_dtype",
    "_name_or_path",
];

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

    /// The elementwise op that computes it.
    pub fn unary(self) -> Unary {
        match self {
            HiddenAct::QuickGelu => Unary::QuickGelu,
            HiddenAct::Gelu => Unary::Gelu,
            HiddenAct::GeluTanh => Unary::GeluTanh,
        }
    }
}

fn d_vocab_size() -> usize {
    49408
}
fn d_hidden_size() -> usize {
    512
}
fn d_intermediate_size() -> usize {
    2048
}
fn d_num_hidden_layers() -> usize {
    12
}
fn d_num_attention_heads() -> usize {
    8
}
fn d_max_position_embeddings() -> usize {
    77
}
fn d_hidden_act() -> String {
    "quick_gelu".into()
}
fn d_layer_norm_eps() -> f64 {
    1e-5
}
fn d_eos_token_id() -> Value {
    Value::from(49407)
}

/// `text_encoder/config.json` (transformers' `CLIPTextConfig`).
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    #[serde(default = "d_vocab_size")]
    pub vocab_size: usize,
    /// D, the width of the residual stream.
    #[serde(default = "d_hidden_size")]
    pub hidden_size: usize,
    /// The MLP's inner width.
    #[serde(default = "d_intermediate_size")]
    pub intermediate_size: usize,
    #[serde(default = "d_num_hidden_layers")]
    pub num_hidden_layers: usize,
    /// H; the head dim is hidden_size / H.
    #[serde(default = "d_num_attention_heads")]
    pub num_attention_heads: usize,
    /// The longest input (the rows of the learned position table).
    #[serde(default = "d_max_position_embeddings")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "d_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Picks the pooled position (see `ClipTextModel::pool_positions`); an integer.
    #[serde(default = "d_eos_token_id")]
    pub eos_token_id: Value,
    /// Every other key, by name.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

impl ClipTextConfig {
    /// Reads and validates `path` (a config.json), warning on stderr about keys it does not know.
    pub fn from_file(path: &Path) -> Result<ClipTextConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
        let cfg = ClipTextConfig::from_value(&value).map_err(|e| Error::format(path, e.to_string()))?;
        let unknown = cfg.unknown_keys();
        if !unknown.is_empty() {
            eprintln!("warning: {}: keys revelio does not know, ignored: {}", path.display(), unknown.join(", "));
        }
        Ok(cfg)
    }

    /// Parses and validates a config given as JSON (no warnings: see `unknown_keys`).
    pub fn from_value(value: &Value) -> Result<ClipTextConfig> {
        let cfg: ClipTextConfig = serde_json::from_value(value.clone())
            .map_err(|e| Error::Config(format!("CLIP text config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Keys that are neither read nor known to be irrelevant.
    pub fn unknown_keys(&self) -> Vec<String> {
        self.other.keys().filter(|k| !KNOWN_UNUSED.contains(&k.as_str())).cloned().collect()
    }

    /// The MLP activation (validated).
    pub fn act(&self) -> Result<HiddenAct> {
        HiddenAct::parse(&self.hidden_act).ok_or_else(|| {
            Error::Config(format!(
                "CLIP text config: hidden_act \"{}\" is not supported (quick_gelu, gelu, gelu_pytorch_tanh, gelu_new are)",
                self.hidden_act
            ))
        })
    }

    /// The EOS id (validated).
    pub fn eos(&self) -> Result<i64> {
        self.eos_token_id.as_i64().ok_or_else(|| {
            Error::Config(format!(
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
        let bad = |msg: String| Err(Error::Config(format!("CLIP text config: {msg}")));
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
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        let d = self.head_dim();
        if !d.is_multiple_of(HEAD_DIM_MULTIPLE) || d > crate::ops::attention::MAX_HEAD_DIM {
            return bad(format!(
                "head dim hidden_size / num_attention_heads = {} / {} = {d} is not supported \
                 (revelio's attention takes multiples of {HEAD_DIM_MULTIPLE} up to {})",
                self.hidden_size,
                self.num_attention_heads,
                crate::ops::attention::MAX_HEAD_DIM
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return bad(format!("layer_norm_eps must be positive and finite, got {}", self.layer_norm_eps));
        }
        self.act()?;
        self.eos()?;
        if let Some(Value::String(t)) = self.other.get("model_type") {
            if t != "clip_text_model" {
                return bad(format!(
                    "model_type \"{t}\": expected \"clip_text_model\" (a text_encoder/ folder of CLIPTextModel)"
                ));
            }
        }
        if let Some(Value::Array(archs)) = self.other.get("architectures") {
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
        assert!(with("num_attention_heads", 128.into()).contains("= 6"));
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
