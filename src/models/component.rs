//! One loader for every model component revelio runs: a component folder (the class comes from
//! its `config.json`), a pipeline folder with `--component`, or a single-file CompVis/LDM
//! checkpoint with `--component`. Used by `revelio forward`, `revelio bench` and extraction.

use super::clip::{ClipTextConfig, ClipTextModel};
use super::dit::DiT;
use super::ldm::SingleFile;
use super::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use super::vae::{AutoencoderKL, AutoencoderKLConfig};
use crate::io::config::read_config;
use crate::tensor::{DType, Device};
use crate::{Error, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    Unet,
    Vae,
    TextEncoder,
    Dit,
}

impl ComponentKind {
    /// Parses `--component` (diffusers' folder names).
    pub fn parse(s: &str) -> Result<ComponentKind> {
        match s {
            "unet" => Ok(ComponentKind::Unet),
            "vae" => Ok(ComponentKind::Vae),
            "text_encoder" | "clip" => Ok(ComponentKind::TextEncoder),
            "transformer" | "dit" => Ok(ComponentKind::Dit),
            other => Err(Error::BadOption(format!("--component {other}: expected unet, vae, text_encoder or transformer"))),
        }
    }

    /// The folder name in a pipeline folder.
    pub fn folder(self) -> &'static str {
        match self {
            ComponentKind::Unet => "unet",
            ComponentKind::Vae => "vae",
            ComponentKind::TextEncoder => "text_encoder",
            ComponentKind::Dit => "transformer",
        }
    }
}

pub enum Component {
    Unet(UNet2DConditionModel),
    Vae(AutoencoderKL),
    TextEncoder(ClipTextModel),
    Dit(DiT),
}

impl Component {
    pub fn kind(&self) -> ComponentKind {
        match self {
            Component::Unet(_) => ComponentKind::Unet,
            Component::Vae(_) => ComponentKind::Vae,
            Component::TextEncoder(_) => ComponentKind::TextEncoder,
            Component::Dit(_) => ComponentKind::Dit,
        }
    }
}

/// The kind of the component folder `dir`, from its config.json.
fn kind_of_folder(dir: &Path) -> Result<ComponentKind> {
    let path = dir.join("config.json");
    let v = Value::Object(read_config(&path, "model")?);
    if let Some(class) = v["_class_name"].as_str() {
        return match class {
            "UNet2DConditionModel" => Ok(ComponentKind::Unet),
            "AutoencoderKL" => Ok(ComponentKind::Vae),
            "DiTTransformer2DModel" => Ok(ComponentKind::Dit),
            "Transformer2DModel" if v["norm_type"] == "ada_norm_zero" => Ok(ComponentKind::Dit),
            other => Err(Error::format(&path, format!("`_class_name` {other:?} is not a model revelio runs"))),
        };
    }
    let archs = v["architectures"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>());
    match archs.as_deref() {
        Some(["CLIPTextModel"]) | Some(["CLIPTextModelWithProjection"]) => Ok(ComponentKind::TextEncoder),
        _ => Err(Error::format(&path, "no `_class_name` (diffusers) or CLIPTextModel `architectures` (transformers)")),
    }
}

/// Resolves `path` (+ optional `--component`) to a component folder and its kind, or to a
/// single-file checkpoint.
pub enum Source {
    Folder(PathBuf, ComponentKind),
    SingleFile(PathBuf, ComponentKind),
}

pub fn resolve(path: &Path, component: Option<&str>) -> Result<Source> {
    let wanted = component.map(ComponentKind::parse).transpose()?;
    if path.is_file() {
        let kind = wanted.ok_or_else(|| {
            Error::BadOption(format!(
                "{} is a single-file checkpoint: say which part to run with --component unet|vae|text_encoder",
                path.display()
            ))
        })?;
        return Ok(Source::SingleFile(path.to_path_buf(), kind));
    }
    if path.join("model_index.json").is_file() {
        let kind = wanted.ok_or_else(|| {
            let present: Vec<&str> = ["unet", "vae", "text_encoder", "transformer"]
                .into_iter()
                .filter(|c| path.join(c).join("config.json").is_file())
                .collect();
            Error::BadOption(format!(
                "{} is a pipeline folder: choose a component with --component ({})",
                path.display(),
                present.join(", ")
            ))
        })?;
        let dir = path.join(kind.folder());
        return Ok(Source::Folder(dir.clone(), kind_of_folder(&dir)?));
    }
    if path.join("config.json").is_file() {
        let kind = kind_of_folder(path)?;
        if let Some(w) = wanted {
            if w != kind {
                return Err(Error::BadOption(format!("{} holds a {kind:?} model, not a {w:?}", path.display())));
            }
        }
        return Ok(Source::Folder(path.to_path_buf(), kind));
    }
    if let Some(kind) = wanted {
        if path.join(kind.folder()).join("config.json").is_file() {
            let dir = path.join(kind.folder());
            return Ok(Source::Folder(dir.clone(), kind_of_folder(&dir)?));
        }
        if kind == ComponentKind::Dit {
            // An original DiT checkpoint exported to safetensors, with or without config.json.
            return Ok(Source::Folder(path.to_path_buf(), kind));
        }
    }
    Err(Error::format(
        path,
        "not a model: expected a component folder (config.json + safetensors), a pipeline folder \
         (model_index.json) with --component, or a single-file .safetensors checkpoint with --component",
    ))
}

/// A component config.json given on the command line, for single-file checkpoints whose
/// structure is not the built-in SD 1.5 / 2.1 one.
fn config_override(config: Option<&Path>) -> Result<Option<Value>> {
    config.map(|p| Ok(Value::Object(read_config(p, "model")?))).transpose()
}

/// Loads the component at `path` in `dtype` on `device`. `config`: a diffusers config.json for
/// the component, used with single-file checkpoints instead of the built-in SD 1.5 / SD 2.1
/// config inferred from the file (ignored for folders, which carry their own).
pub fn load(path: &Path, component: Option<&str>, config: Option<&Path>, dtype: DType, device: &Device) -> Result<Component> {
    match resolve(path, component)? {
        Source::Folder(dir, kind) => Ok(match kind {
            ComponentKind::Unet => Component::Unet(UNet2DConditionModel::load(&dir, dtype, device)?),
            ComponentKind::Vae => Component::Vae(AutoencoderKL::load(&dir, dtype, device)?),
            ComponentKind::TextEncoder => Component::TextEncoder(ClipTextModel::load(&dir, dtype, device)?),
            ComponentKind::Dit => Component::Dit(DiT::load(&dir, dtype, device)?),
        }),
        Source::SingleFile(file, kind) => {
            let sf = SingleFile::open(&file)?;
            let given = config_override(config)?;
            Ok(match kind {
                ComponentKind::Unet => {
                    let cfg_json = given.unwrap_or_else(|| sf.unet_config());
                    let weights = sf.unet_weights(&cfg_json, dtype, device)?;
                    let model = UNet2DConditionModel::from_weights(UNet2DConditionConfig::from_value(&file, &cfg_json)?, &weights)?;
                    weights.finish(|_| false)?;
                    Component::Unet(model)
                }
                ComponentKind::Vae => {
                    let cfg_json = given.unwrap_or_else(|| sf.vae_config());
                    let weights = sf.vae_weights(&cfg_json, dtype, device)?;
                    let model = AutoencoderKL::from_weights(AutoencoderKLConfig::from_value(&file, &cfg_json)?, &weights)?;
                    weights.finish(|_| false)?;
                    Component::Vae(model)
                }
                ComponentKind::TextEncoder => {
                    let weights = sf.text_encoder_weights(dtype, device)?;
                    let model = ClipTextModel::new(ClipTextConfig::from_value(&given.unwrap_or_else(|| sf.text_encoder_config()))?, &weights)?;
                    weights.finish(|k| k.ends_with("position_ids"))?;
                    Component::TextEncoder(model)
                }
                ComponentKind::Dit => Component::Dit(DiT::load_file(&file, None, dtype, device)?),
            })
        }
    }
}
