//! The Stable Diffusion VAE: diffusers' `AutoencoderKL` (encoder, quant_conv, the diagonal
//! Gaussian posterior, post_quant_conv, decoder), loaded from a diffusers component folder and
//! checked against diffusers 0.42 (`models/autoencoders/autoencoder_kl.py`, `vae.py`) by
//! tests/vae.rs. Reuses the U-Net's resnet, down/upsampler and attention modules.
//!
//! Legend: B = batch, H, W = image size, L = latent channels, h, w = latent size
//! (H / 2^(levels - 1)). Images are in [-1, 1].
//!
//! Taps: every module path `tap_names` lists (`encoder.down_blocks.1`,
//! `encoder.mid_block.attentions.0`, `quant_conv`, `decoder.up_blocks.2.resnets.0`, ...), with
//! `:delta` for output minus input; `encode_with_taps` and `decode_with_taps` record them.

pub mod blocks;
pub mod config;
pub mod decoder;
pub mod encoder;

use crate::models::taps::{split_delta, TapRequest, Taps};
use crate::models::common::layers::Conv2d;
use crate::models::common::load::{check_dtype, component_dir};
use crate::models::common::visit::{step, visit};
use crate::models::weights::Weights;
use crate::tensor::{DType, Device, Tensor};
use crate::{ops, Context, Error, Result};
pub use config::AutoencoderKLConfig;
use decoder::Decoder;
use encoder::Encoder;
use std::path::Path;

/// The posterior N(mean, exp(logvar)) the encoder outputs (diffusers'
/// `DiagonalGaussianDistribution`). The log-variance is clamped to [-30, 20] as diffusers does
/// (<https://github.com/huggingface/diffusers/blob/v0.42.1/src/diffusers/models/autoencoders/vae.py#L694>).
/// `logvar`, `std` and `sample` compute on the host in f32 (the ops have no exp or clamp) and
/// return tensors in the mean's dtype on its device; the mean (`mode`) needs none of that.
pub struct DiagonalGaussian {
    /// [B, L, h, w]
    pub mean: Tensor,
    /// [B, L, h, w], not yet clamped.
    raw_logvar: Tensor,
}

impl DiagonalGaussian {
    /// The mode of the posterior: its mean (what SD feature extraction uses).
    pub fn mode(&self) -> Tensor {
        self.mean.clone()
    }

    fn host_map(&self, values: Vec<f32>) -> Result<Tensor> {
        ops::to_dtype(&Tensor::from_vec(values, self.mean.shape().clone(), &Device::Cpu)?, self.mean.dtype())?.to_device(&self.mean.device())
    }

    fn clamped_logvar(&self) -> Result<Vec<f32>> {
        Ok(self.raw_logvar.to_f32_vec()?.into_iter().map(|v| v.clamp(-30.0, 20.0)).collect())
    }

    /// clamp(logvar, -30, 20): [B, L, h, w]
    pub fn logvar(&self) -> Result<Tensor> {
        self.host_map(self.clamped_logvar()?)
    }

    /// exp(0.5 * logvar): [B, L, h, w]
    pub fn std(&self) -> Result<Tensor> {
        self.host_map(self.clamped_logvar()?.into_iter().map(|v| (0.5 * v).exp()).collect())
    }

    /// mean + std * noise with noise = `Tensor::randn(shape, seed)`: revelio's counter-based
    /// generator (the same values on every device and for every batch split), not torch's, so
    /// a sample equals diffusers' only in distribution.
    pub fn sample(&self, seed: u64) -> Result<Tensor> {
        let noise = Tensor::randn(self.mean.shape().clone(), seed, &Device::Cpu)?.to_f32_vec()?;
        let mean = self.mean.to_f32_vec()?;
        let lv = self.clamped_logvar()?;
        self.host_map(mean.iter().zip(&lv).zip(&noise).map(|((m, l), n)| m + (0.5 * l).exp() * n).collect())
    }
}

pub struct AutoencoderKL {
    config: AutoencoderKLConfig,
    dtype: DType,
    device: Device,
    encoder: Encoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    decoder: Decoder,
    tap_names: Vec<String>,
}

impl AutoencoderKL {
    /// Loads a diffusers VAE folder (`config.json` and `diffusion_pytorch_model[.fp16]
    /// .safetensors`), or the `vae/` folder of a pipeline folder, in `dtype` on `device`.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        check_dtype(dtype, device)?;
        let dir = component_dir(dir, "vae")?;
        let config = AutoencoderKLConfig::from_file(&dir.join("config.json"))?;
        let weights = Weights::from_dir(&dir, None, dtype, device)?;
        let model = Self::from_weights(config, &weights).with_context(|| format!("loading the VAE from {}", dir.display()))?;
        weights.finish(|_| false)?;
        Ok(model)
    }

    /// Builds the model from a config and its weights (keys as diffusers names them).
    pub fn from_weights(config: AutoencoderKLConfig, weights: &Weights) -> Result<Self> {
        config.validate().map_err(Error::Unsupported)?;
        let root = weights.root();
        let l2 = 2 * config.latent_channels;
        let l = config.latent_channels;
        let encoder = Encoder::load(&root.pp("encoder"), &config)?;
        let quant_conv = if config.use_quant_conv { Some(Conv2d::load(&root.pp("quant_conv"), l2, l2, 1, 1, 0)?) } else { None };
        let post_quant_conv =
            if config.use_post_quant_conv { Some(Conv2d::load(&root.pp("post_quant_conv"), l, l, 1, 1, 0)?) } else { None };
        let decoder = Decoder::load(&root.pp("decoder"), &config)?;
        let mut tap_names = Vec::new();
        encoder.tap_names(&mut tap_names);
        if quant_conv.is_some() {
            tap_names.push("quant_conv".into());
        }
        if post_quant_conv.is_some() {
            tap_names.push("post_quant_conv".into());
        }
        decoder.tap_names(&mut tap_names);
        Ok(AutoencoderKL {
            config,
            dtype: weights.dtype(),
            device: weights.device().clone(),
            encoder,
            quant_conv,
            post_quant_conv,
            decoder,
            tap_names,
        })
    }

    pub fn config(&self) -> &AutoencoderKLConfig {
        &self.config
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Latents = scaling_factor * posterior sample (0.18215 for SD).
    pub fn scaling_factor(&self) -> f32 {
        self.config.scaling_factor as f32
    }

    /// Every tappable module path: the encoder's, quant_conv, post_quant_conv, the decoder's.
    pub fn tap_names(&self) -> Vec<String> {
        self.tap_names.clone()
    }

    /// Whether module `path` runs in the decode pass (post_quant_conv and the decoder).
    pub fn in_decoder(&self, path: &str) -> bool {
        path == "post_quant_conv" || path.starts_with("decoder.")
    }

    /// Resolves a tap name (a module path, optionally with `:delta`).
    pub fn resolve_tap(&self, name: &str) -> Result<TapRequest> {
        let (path, delta) = split_delta(name);
        if self.tap_names.iter().any(|p| p == path) {
            return Ok(TapRequest { name: name.to_string(), path: path.to_string(), delta });
        }
        Err(Error::BadOption(format!(
            "unknown VAE tap `{name}`. Module paths, in execution order: {}. Append `:delta` for output minus input.",
            self.tap_names.join(", ")
        )))
    }

    /// A `Taps` recording `names`; `want_output` false lets a pass stop after the last of them.
    pub fn taps(&self, names: &[&str], want_output: bool) -> Result<Taps> {
        Taps::resolve(names, want_output, |n| self.resolve_tap(n))
    }

    /// images: [B, in_channels, H, W] in [-1, 1] (H, W multiples of 2^(levels - 1)) -> the
    /// posterior over [B, L, h, w].
    pub fn encode(&self, images: &Tensor) -> Result<DiagonalGaussian> {
        self.encode_with_taps(images, &mut Taps::default())?
            .ok_or_else(|| Error::Internal("VAE encode stopped early with taps that want the output".into()))
    }

    /// `encode`, recording `taps`; None when it stopped after the last requested tap.
    pub fn encode_with_taps(&self, images: &Tensor, taps: &mut Taps) -> Result<Option<DiagonalGaussian>> {
        let _r = crate::trace::range("vae.encode");
        let (_, c, _, _) = images.dims4("AutoencoderKL.encode")?;
        if c != self.config.in_channels {
            return Err(Error::BadInput(format!("VAE images {} have {c} channels, the config's in_channels is {}", images.shape(), self.config.in_channels)));
        }
        if taps.done() {
            return Ok(None);
        }
        let x = ops::to_dtype(&images.to_device(&self.device)?, self.dtype)?;
        // 1. encoder: [B, Cin, H, W] -> moments [B, 2L, h, w]
        let mut moments = step!(self.encoder.forward(&x, taps));
        // 2. quant_conv (1x1)
        if let Some(q) = &self.quant_conv {
            let out = q.forward(&moments)?;
            moments = step!(visit(taps, "quant_conv", &moments, out));
        }
        // 3. the posterior: the moments split in half along channels
        let l = self.config.latent_channels;
        Ok(Some(DiagonalGaussian {
            mean: ops::layout::narrow(&moments, 1, 0, l)?,
            raw_logvar: ops::layout::narrow(&moments, 1, l, l)?,
        }))
    }

    /// latents: [B, L, h, w] (unscaled) -> images [B, out_channels, H, W].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        self.decode_with_taps(latents, &mut Taps::default())?
            .ok_or_else(|| Error::Internal("VAE decode stopped early with taps that want the output".into()))
    }

    /// `decode`, recording `taps`; None when it stopped after the last requested tap.
    pub fn decode_with_taps(&self, latents: &Tensor, taps: &mut Taps) -> Result<Option<Tensor>> {
        let _r = crate::trace::range("vae.decode");
        let (_, c, _, _) = latents.dims4("AutoencoderKL.decode")?;
        if c != self.config.latent_channels {
            return Err(Error::BadInput(format!(
                "VAE latents {} have {c} channels, the config's latent_channels is {}",
                latents.shape(),
                self.config.latent_channels
            )));
        }
        if taps.done() {
            return Ok(None);
        }
        let mut z = ops::to_dtype(&latents.to_device(&self.device)?, self.dtype)?;
        // 1. post_quant_conv (1x1)
        if let Some(p) = &self.post_quant_conv {
            let out = p.forward(&z)?;
            z = step!(visit(taps, "post_quant_conv", &z, out));
        }
        // 2. decoder
        self.decoder.forward(&z, taps)
    }

    /// scaling_factor * (the posterior mean, or a sample drawn with `sample_seed`): the latents
    /// the U-Net works on.
    pub fn encode_scaled(&self, images: &Tensor, sample_seed: Option<u64>) -> Result<Tensor> {
        let posterior = self.encode(images)?;
        let z = match sample_seed {
            None => posterior.mode(),
            Some(seed) => posterior.sample(seed)?,
        };
        ops::scale(&z, self.scaling_factor())
    }

    /// decode(latents / scaling_factor): images from U-Net latents.
    pub fn decode_scaled(&self, latents: &Tensor) -> Result<Tensor> {
        let z = ops::to_dtype(&latents.to_device(&self.device)?, self.dtype)?;
        self.decode(&ops::scale(&z, 1.0 / self.scaling_factor())?)
    }
}
