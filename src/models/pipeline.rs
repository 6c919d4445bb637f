//! A diffusers pipeline folder loaded whole, and everything its users do the same way:
//! Stable Diffusion (U-Net, VAE, CLIP text encoder and tokenizer, scheduler) or DiT
//! (transformer, VAE, optional scheduler). It owns the VAE's scaling (encode, decode), prompt
//! encoding, the classifier-free-guidance batch layout ([uncond; cond], `Call::cfg`), one
//! denoiser call under a run's hooks, and the DDIM sampling loop (diffusers'
//! `StableDiffusionPipeline.__call__` with a `DDIMScheduler`). Generation, extraction and
//! online Diff-C all call it, so none of them knows the batch layout or the prompt encoding.
//!
//! Legend: B = samples, L = latent channels, h, w = latent size (H / f, W / f, f = the VAE's
//! downsampling factor), S = text tokens (77), D = text width.
//!
//! Conventions (shared/spec/revelio.md sections 0-1 for extraction; diffusers for sampling):
//! latents = scaling_factor * posterior mean (or a seeded sample); a timestep is an index into
//! the training schedule. Sampling uses DDIM whatever scheduler the folder names: a PNDM folder
//! (SD 1.4 and 1.5 ship PNDM) is sampled with DDIM built from its betas, `steps_offset`,
//! `set_alpha_to_one`, prediction type and spacing (`DDIMScheduler.from_config`), with no
//! sample clipping. Random draws depend only on (seed, sample), never on batch or order:
//! sample i's initial latent is `rng::normal` over `rng::derive(seed, [i, INIT_STREAM])` in
//! CHW order; its DDIM noise at step k (eta > 0) over `rng::derive(seed, [i, ETA_STREAM, k])`.

use crate::models::clip::{ClipTextModel, ClipTokenizer};
use crate::models::ddim::{Ddim, DdimConfig};
use crate::models::dit::DiT;
use crate::models::hooks::Call;
use crate::models::taps::{TapRequest, Taps};
use crate::models::unet::UNet2DConditionModel;
use crate::models::vae::AutoencoderKL;
use crate::tensor::{DType, Device, Tensor};
use crate::{ops, rng, Error, Result};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Which latent the VAE gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posterior {
    /// The posterior mean (the reference).
    Mean,
    /// mean + std * noise, the noise of image i drawn from `rng::derive(seed, [i, SAMPLE_STREAM])`.
    Sample,
}

/// The counter path entry of the posterior-sample stream (noise streams use timesteps < 2^32).
pub const SAMPLE_STREAM: u64 = 1 << 40;
/// Stream of a sample's initial latent: `derive(seed, [i, INIT_STREAM])`.
pub const INIT_STREAM: u64 = 0;
/// Stream of a sample's DDIM noise at step k: `derive(seed, [i, ETA_STREAM, k])`.
pub const ETA_STREAM: u64 = 1;

/// Distinct prompt embeddings kept between calls (the empty prompt, templates).
const PROMPT_CACHE: usize = 64;

struct SdNet {
    unet: UNet2DConditionModel,
    text: ClipTextModel,
    tokenizer: ClipTokenizer,
}

enum Net {
    Sd(Box<SdNet>),
    Dit(Box<DiT>),
}

/// The folder's scheduler as sampling reads it.
struct Scheduler {
    /// `_class_name` (DDIMScheduler, PNDMScheduler, ...); empty when the folder has none.
    class: String,
    /// The DDIM config for sampling, or why there is none.
    sampling: std::result::Result<DdimConfig, String>,
}

/// Sampling settings (diffusers' `num_inference_steps`, `guidance_scale`, `eta`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub steps: usize,
    /// Classifier-free guidance scale; CFG runs when it is above 1, as in diffusers.
    pub guidance: f32,
    /// DDIM eta (0: deterministic DDIM).
    pub eta: f32,
    /// Seeds the eta noise (see the module docs).
    pub seed: u64,
}

impl Sampling {
    pub fn cfg(&self) -> bool {
        self.guidance > 1.0
    }
}

/// A loaded pipeline: the denoiser, the VAE and the noise schedule.
pub struct Pipeline {
    net: Net,
    pub vae: AutoencoderKL,
    /// The noise schedule of the folder's betas (what `add_noise` uses).
    pub ddim: Ddim,
    scheduler: Scheduler,
    /// A hash of every config file read (model, VAE, text encoder, scheduler).
    pub config_hash: String,
    /// Prompt embeddings [1, S, D] by text.
    prompts: HashMap<String, Tensor>,
}

/// The betas of a `scheduler_config.json` (what `add_noise` needs; missing fields take
/// DDIMScheduler's defaults) and the DDIM config sampling would use, read leniently so that a
/// setting only sampling needs (`clip_sample`, which PNDM configs omit and diffusers then
/// defaults to true; the prediction type) fails only when sampling.
fn read_scheduler(path: &Path) -> Result<(Ddim, Scheduler)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let map: Map<String, Value> =
        serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not a JSON object of scheduler settings: {e}")))?;
    let d = DdimConfig::default();
    let num = |k: &str, v: f64| map.get(k).filter(|x| !x.is_null()).map_or(Some(v), |x| x.as_f64());
    let bad = |k: &str| Error::format(path, format!("`{k}` is not a number"));
    let betas = DdimConfig {
        num_train_timesteps: num("num_train_timesteps", d.num_train_timesteps as f64).ok_or_else(|| bad("num_train_timesteps"))? as usize,
        beta_start: num("beta_start", d.beta_start).ok_or_else(|| bad("beta_start"))?,
        beta_end: num("beta_end", d.beta_end).ok_or_else(|| bad("beta_end"))?,
        beta_schedule: map.get("beta_schedule").and_then(|v| v.as_str()).map_or(d.beta_schedule.clone(), String::from),
        trained_betas: map.get("trained_betas").filter(|v| !v.is_null()).cloned(),
        clip_sample: false,
        ..d.clone()
    };
    let ddim = Ddim::new(betas.clone()).map_err(|e| Error::format(path, e.to_string()))?;
    let class = map.get("_class_name").and_then(Value::as_str).unwrap_or("").to_string();
    let sampling = (|| {
        let text_of = |k: &str, v: &str| map.get(k).and_then(Value::as_str).unwrap_or(v).to_string();
        let flag = |k: &str, v: bool| map.get(k).and_then(Value::as_bool).unwrap_or(v);
        // DDIMScheduler.from_config leaves clip_sample at its default (true) when the field is
        // absent; for a DDIM folder that is what the author saved, for another class it is an
        // artefact of the swap, and the study samples without clipping.
        let clip = map.get("clip_sample").and_then(Value::as_bool);
        if clip == Some(true) || (class == "DDIMScheduler" && clip.is_none()) {
            return Err("clip_sample is true (DDIMScheduler's default when the field is absent): not supported; SD configs set it false".to_string());
        }
        let cfg = DdimConfig {
            set_alpha_to_one: flag("set_alpha_to_one", d.set_alpha_to_one),
            steps_offset: map.get("steps_offset").and_then(Value::as_u64).unwrap_or(0) as usize,
            prediction_type: text_of("prediction_type", &d.prediction_type),
            timestep_spacing: text_of("timestep_spacing", &d.timestep_spacing),
            ..betas
        };
        Ddim::new(cfg.clone()).map(|_| cfg).map_err(|e| e.to_string())
    })();
    Ok((ddim, Scheduler { class, sampling }))
}

/// FNV-1a, 64-bit: a stable hash of config files.
fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn need(dir: &Path, sub: &str, kind: &str) -> Result<PathBuf> {
    let p = dir.join(sub);
    if p.is_dir() {
        Ok(p)
    } else {
        Err(Error::BadInput(format!(
            "model folder {}: has no {sub}/, which a {kind} pipeline folder needs ({})",
            dir.display(),
            if kind == "Stable Diffusion" { "unet/, vae/, text_encoder/, tokenizer/, scheduler/" } else { "transformer/, vae/" }
        )))
    }
}

/// `rng::normal` over `derive(stream)` for each sample, concatenated: [B, dims...] on the host.
fn draws(samples: &[usize], dims: &[usize], stream: impl Fn(usize) -> u64) -> Result<Tensor> {
    let per: usize = dims.iter().product();
    let v: Vec<f32> = samples.iter().flat_map(|&i| rng::normal_vec(stream(i), 0, per)).collect();
    Tensor::from_vec(v, std::iter::once(samples.len()).chain(dims.iter().copied()).collect::<Vec<_>>(), &Device::Cpu)
}

/// The initial latents of `samples`: [B, dims...] f32 on the host (see the module docs).
pub fn initial_latents(seed: u64, samples: &[usize], dims: &[usize]) -> Result<Tensor> {
    draws(samples, dims, |i| rng::derive(seed, &[i as u64, INIT_STREAM]))
}

impl Pipeline {
    /// Loads the pipeline folder `dir` in `dtype` on `device`: `unet/` makes it Stable
    /// Diffusion, `transformer/` DiT; anything else is an error saying what the folder is.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Pipeline> {
        let mut files = Vec::new();
        let (net, vae_dir, sched) = if dir.join("unet").is_dir() {
            let kind = "Stable Diffusion";
            let (unet_dir, vae_dir) = (need(dir, "unet", kind)?, need(dir, "vae", kind)?);
            let (text_dir, tok_dir, sched_dir) = (need(dir, "text_encoder", kind)?, need(dir, "tokenizer", kind)?, need(dir, "scheduler", kind)?);
            files.extend([unet_dir.join("config.json"), text_dir.join("config.json")]);
            let net = Net::Sd(Box::new(SdNet {
                unet: UNet2DConditionModel::load(&unet_dir, dtype, device)?,
                text: ClipTextModel::load(&text_dir, dtype, device)?,
                tokenizer: ClipTokenizer::from_dir(&tok_dir)?,
            }));
            (net, vae_dir, Some(sched_dir))
        } else if dir.join("transformer").is_dir() {
            let vae_dir = need(dir, "vae", "DiT")?;
            files.push(dir.join("transformer").join("config.json"));
            let sched = dir.join("scheduler");
            (Net::Dit(Box::new(DiT::load(&dir.join("transformer"), dtype, device)?)), vae_dir, sched.is_dir().then_some(sched))
        } else {
            let what = std::fs::read_to_string(dir.join("config.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v.get("_class_name").and_then(|c| c.as_str()).map(String::from));
            return Err(Error::BadInput(match what {
                Some(class) => format!(
                    "model folder {}: a single {class} component, not a pipeline folder; pass the folder holding unet/ \
                     (or transformer/), vae/ and the rest",
                    dir.display()
                ),
                None => format!(
                    "model folder {}: not a diffusers pipeline folder (expected unet/, vae/, text_encoder/, tokenizer/, \
                     scheduler/ for Stable Diffusion, or transformer/ and vae/ for DiT)",
                    dir.display()
                ),
            }));
        };
        files.push(vae_dir.join("config.json"));
        let vae = AutoencoderKL::load(&vae_dir, dtype, device)?;
        let (ddim, scheduler) = match &sched {
            Some(s) => {
                let path = s.join("scheduler_config.json");
                files.push(path.clone());
                read_scheduler(&path)?
            }
            None => (Ddim::dit_default(), Scheduler { class: String::new(), sampling: Ok(DdimConfig::dit()) }),
        };
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for f in &files {
            let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
            h = fnv1a(&bytes, h);
        }
        Ok(Pipeline { net, vae, ddim, scheduler, config_hash: format!("{h:016x}"), prompts: HashMap::new() })
    }

    pub fn kind(&self) -> &'static str {
        match self.net {
            Net::Sd(_) => "sd",
            Net::Dit(_) => "dit",
        }
    }

    pub fn is_dit(&self) -> bool {
        matches!(self.net, Net::Dit(_))
    }

    pub fn device(&self) -> &Device {
        self.vae.device()
    }

    /// Resolves layer names to taps (an unknown name lists the ones the model offers).
    pub fn resolve(&self, layers: &[String]) -> Result<Vec<TapRequest>> {
        layers
            .iter()
            .map(|l| match &self.net {
                Net::Sd(sd) => sd.unet.resolve_tap(l),
                Net::Dit(dit) => dit.resolve_tap(l),
            })
            .collect()
    }

    /// The DiT null class (num_classes), or None for Stable Diffusion.
    pub fn dit_classes(&self) -> Option<usize> {
        match &self.net {
            Net::Dit(dit) => Some(dit.config().num_classes()),
            Net::Sd(_) => None,
        }
    }

    /// The VAE's downsampling factor f: 2^(levels - 1) (8 for SD).
    pub fn vae_scale_factor(&self) -> usize {
        1 << self.vae.config().block_out_channels.len().saturating_sub(1)
    }

    /// The latent shape [L, h, w] of an image of `height` x `width` pixels.
    pub fn latent_dims(&self, height: usize, width: usize) -> Vec<usize> {
        let f = self.vae_scale_factor();
        let l = match &self.net {
            Net::Sd(sd) => sd.unet.config().in_channels,
            Net::Dit(dit) => dit.config().in_channels,
        };
        vec![l, height / f, width / f]
    }

    /// The scheduler class the folder names, when it is not DDIM (sampling then uses DDIM
    /// built from its settings): the notice to print once.
    pub fn scheduler_notice(&self) -> Option<String> {
        let s = &self.scheduler;
        if s.class.is_empty() || s.class == "DDIMScheduler" {
            return None;
        }
        let c = s.sampling.as_ref().ok()?;
        Some(format!(
            "the folder's scheduler is {}: sampling uses DDIM built from its settings ({} betas {}..{}, steps_offset {}, \
             set_alpha_to_one {}, {} spacing, {} prediction, no sample clipping), as the concepts study does",
            s.class, c.beta_schedule, c.beta_start, c.beta_end, c.steps_offset, c.set_alpha_to_one, c.timestep_spacing, c.prediction_type
        ))
    }

    /// A fresh DDIM sampler for this folder.
    pub fn sampler(&self) -> Result<Ddim> {
        match &self.scheduler.sampling {
            Ok(c) => Ddim::new(c.clone()),
            Err(why) => Err(Error::Unsupported(format!("sampling with this folder's scheduler ({}): {why}", self.scheduler.class))),
        }
    }

    fn sd(&self, what: &str) -> Result<&SdNet> {
        match &self.net {
            Net::Sd(sd) => Ok(sd),
            Net::Dit(_) => Err(Error::BadOption(format!("{what} is for Stable Diffusion pipelines; this one is DiT (class-conditional)"))),
        }
    }

    /// The tokens of `text` without start and end tokens, and how many the text encoder
    /// takes (its context length less those two): longer prompts are truncated.
    pub fn prompt_tokens(&self, text: &str) -> Result<(usize, usize)> {
        let sd = self.sd("prompts")?;
        Ok((sd.tokenizer.encode(text).len(), sd.tokenizer.model_max_length().saturating_sub(2)))
    }

    /// images: [B, 3, R, R] in [-1, 1] -> latents [B, L, h, w] f32 on the host:
    /// scaling_factor * (posterior mean, or a sample per image from `seed`).
    pub fn encode(&self, images: &Tensor, posterior: Posterior, seed: u64, indices: &[usize]) -> Result<Tensor> {
        let post = self.vae.encode(images)?;
        let sf = self.vae.scaling_factor();
        let mean = ops::to_dtype(&post.mean, DType::F32)?.to_f32_vec()?;
        let dims = post.mean.dims().to_vec();
        let per = dims[1..].iter().product::<usize>();
        let z: Vec<f32> = match posterior {
            Posterior::Mean => mean.iter().map(|m| m * sf).collect(),
            Posterior::Sample => {
                let std = ops::to_dtype(&post.std()?, DType::F32)?.to_f32_vec()?;
                let mut z = Vec::with_capacity(mean.len());
                for (k, &i) in indices.iter().enumerate() {
                    let eps = rng::normal_vec(rng::derive(seed, &[i as u64, SAMPLE_STREAM]), 0, per);
                    z.extend((0..per).map(|j| (mean[k * per + j] + std[k * per + j] * eps[j]) * sf));
                }
                z
            }
        };
        Tensor::from_vec(z, dims, &Device::Cpu)
    }

    /// latents: [B, L, h, w] -> images [B, 3, H, W] f32 on the host in [0, 1]: the VAE decode
    /// of latents / scaling_factor, then (x / 2 + 0.5) clamped (diffusers' `VaeImageProcessor`).
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let x = ops::to_dtype(&self.vae.decode_scaled(latents)?, DType::F32)?;
        let v: Vec<f32> = x.to_f32_vec()?.into_iter().map(|p| (p * 0.5 + 0.5).clamp(0.0, 1.0)).collect();
        Tensor::from_vec(v, x.dims().to_vec(), &Device::Cpu)
    }

    /// texts: B prompts -> the U-Net's encoder_hidden_states [B, S, D] (the text encoder's
    /// last_hidden_state, prompts truncated to its context length). Each prompt is encoded
    /// alone, so its embedding does not depend on what it is batched with; a few recent
    /// distinct texts are kept (the empty prompt is encoded once per run).
    pub fn encode_prompts(&mut self, texts: &[&str]) -> Result<Tensor> {
        let mut rows = Vec::with_capacity(texts.len());
        for &t in texts {
            if let Some(e) = self.prompts.get(t) {
                rows.push(e.clone());
                continue;
            }
            let sd = self.sd("prompts")?;
            let ids = sd.tokenizer.encode_batch(&[t], sd.tokenizer.model_max_length())?;
            let e = sd.text.forward(&ids, false)?.last_hidden_state;
            if self.prompts.len() >= PROMPT_CACHE {
                self.prompts.clear();
            }
            self.prompts.insert(t.to_string(), e.clone());
            rows.push(e);
        }
        ops::cat(&rows.iter().collect::<Vec<_>>(), 0)
    }

    /// One denoiser call under the run's hooks (their call context set by the caller): x [B,
    /// L, h, w] (noised latents), t the timestep, `context` the U-Net's encoder_hidden_states
    /// [B, S, D] or `labels` DiT's classes [B]. None: the pass stopped after the deepest tap.
    pub fn forward(&self, x: &Tensor, t: usize, context: Option<&Tensor>, labels: Option<&Tensor>, taps: &mut Taps) -> Result<Option<Tensor>> {
        let b = x.dims()[0];
        let ts = Tensor::from_vec(vec![t as f32; b], [b], &Device::Cpu)?;
        match &self.net {
            Net::Sd(sd) => {
                let ctx = context.ok_or_else(|| Error::Internal("the U-Net needs its conditioning".into()))?;
                sd.unet.forward(x, &ts, ctx, taps)
            }
            Net::Dit(dit) => {
                let y = labels.ok_or_else(|| Error::Internal("DiT needs class labels".into()))?;
                dit.forward(&x.to_device(dit.device())?, &ts, y, taps)
            }
        }
    }

    /// One forward pass recording `requests` of `samples` (a plain call, no CFG), stopping
    /// after the deepest: the tapped values by request name, each [B, C, h', w'].
    pub fn record(&self, x: &Tensor, t: usize, context: Option<&Tensor>, labels: Option<&Tensor>, requests: &[TapRequest], samples: &[usize]) -> Result<HashMap<String, Tensor>> {
        let mut taps = Taps::new(requests.to_vec(), false);
        taps.set_call(Call::plain(t, samples));
        self.forward(x, t, context, labels, &mut taps)?;
        taps.into_values()
    }

    /// DDIM sampling (diffusers' StableDiffusionPipeline loop): from `latents` [B, L, h, w]
    /// (the initial noise), conditioned on `cond` [B, S, D] and, with CFG, `uncond` [B, S, D];
    /// one batched U-Net call per step for both branches ([uncond; cond], `Call::cfg`), whose
    /// hooks see the step, the timestep and the rows of `samples`. `on_step(k)` follows step
    /// k. Returns the final latents [B, L, h, w] in the model's dtype on its device.
    #[allow(clippy::too_many_arguments)]
    pub fn sample(
        &self,
        latents: &Tensor,
        cond: &Tensor,
        uncond: Option<&Tensor>,
        samples: &[usize],
        s: &Sampling,
        taps: &mut Taps,
        on_step: &mut dyn FnMut(usize),
    ) -> Result<Tensor> {
        let sd = self.sd("text-to-image sampling")?;
        let b = latents.dims().first().copied().unwrap_or(0);
        if samples.len() != b || cond.dims().first() != Some(&b) {
            return Err(Error::Internal(format!("sample: latents {}, cond {} and {} samples disagree", latents.shape(), cond.shape(), samples.len())));
        }
        let mut ddim = self.sampler()?;
        let timesteps = ddim.set_timesteps(s.steps)?;
        let (dtype, dev) = (sd.unet.dtype(), sd.unet.device().clone());
        let on_dev = |t: &Tensor| -> Result<Tensor> { ops::to_dtype(&t.to_device(&dev)?, dtype) };
        let context = match (s.cfg(), uncond) {
            (true, Some(u)) => on_dev(&ops::cat(&[u, cond], 0)?)?,
            (true, None) => return Err(Error::Internal("classifier-free guidance needs the uncond embeddings".into())),
            (false, _) => on_dev(cond)?,
        };
        // init_noise_sigma is 1 for DDIM.
        let mut x = on_dev(latents)?;
        let latent_dims = latents.dims()[1..].to_vec();
        for (k, &t) in timesteps.iter().enumerate() {
            taps.set_call(Call::cfg(k, t, samples, s.cfg()));
            let input = if s.cfg() { ops::cat(&[&x, &x], 0)? } else { x.clone() };
            let out = self
                .forward(&input, t, Some(&context), None, taps)?
                .ok_or_else(|| Error::Internal("the U-Net stopped early while sampling".into()))?;
            // noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
            let eps = if s.cfg() {
                let (u, c) = (out.narrow0(0, b)?, out.narrow0(b, b)?);
                ops::add(&u, &ops::scale(&ops::sub(&c, &u)?, s.guidance)?)?
            } else {
                out
            };
            let noise = if s.eta > 0.0 {
                Some(on_dev(&draws(samples, &latent_dims, |i| rng::derive(s.seed, &[i as u64, ETA_STREAM, k as u64]))?)?)
            } else {
                None
            };
            x = ddim.step_eta(&eps, t, &x, s.eta, noise.as_ref())?;
            on_step(k);
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::fnv1a;

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(fnv1a(b"", 0xcbf2_9ce4_8422_2325), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a", 0xcbf2_9ce4_8422_2325), 0xaf63_dc4c_8601_ec8c);
    }
}
