//! Checks before loading a diffusers component (U-Net, VAE): where its `config.json` is, and
//! whether the asked dtype runs on the asked device.

use crate::tensor::{DType, Device};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The folder holding `config.json`: `dir` itself, or `dir/<component>` for a pipeline folder.
pub(crate) fn component_dir(dir: &Path, component: &str) -> Result<PathBuf> {
    if dir.join("config.json").is_file() {
        return Ok(dir.to_path_buf());
    }
    let sub = dir.join(component);
    if sub.join("config.json").is_file() {
        return Ok(sub);
    }
    Err(Error::format(dir, format!("no config.json here or in {component}/: expected a diffusers {component} folder or a pipeline folder")))
}

/// Errors unless `dtype` can run on `device` (the CPU backend computes in f32).
pub(crate) fn check_dtype(dtype: DType, device: &Device) -> Result<()> {
    if !dtype.is_float() || (device.is_cpu() && dtype != DType::F32) {
        return Err(Error::BadOption(format!("cannot run a model in {dtype} on {device}: the CPU runs f32, CUDA f32/f16/bf16")));
    }
    Ok(())
}
