//! The models feature extraction runs: a Stable Diffusion pipeline folder (U-Net, VAE, CLIP text
//! encoder and tokenizer, scheduler) or a DiT one (transformer, VAE, optional scheduler), with
//! the reference's conventions (shared/spec/revelio.md sections 0-1): latents = scaling_factor *
//! posterior mean (or a seeded sample), a timestep is an index into the 1000-step training
//! schedule fed both to `add_noise` and to the model, the empty prompt encoded once, DiT run on
//! the clean latent with the null class unless asked otherwise.

use crate::features::store::ImageEntry;
use crate::models::clip::{ClipTextModel, ClipTokenizer};
use crate::models::ddim::{Ddim, DdimConfig};
use crate::models::dit::DiT;
use crate::models::taps::{TapRequest, Taps};
use crate::models::unet::UNet2DConditionModel;
use crate::models::vae::AutoencoderKL;
use crate::tensor::{DType, Device, Tensor};
use crate::{ops, rng, Error, Result};
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

/// What the U-Net is conditioned on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditioning {
    /// The empty prompt, encoded once (the reference).
    Empty,
    /// A prompt; `{label}` is replaced by the image's class name.
    Prompt(String),
    /// Each image's caption from the dataset.
    Captions,
    /// The class prompt CLIP (a CLIPModel folder) scores best for each image, from these
    /// templates (src/features/clip_prompts.rs); recorded per image in the manifest.
    Clip { model: PathBuf, templates: Vec<String> },
}

impl Conditioning {
    pub fn name(&self) -> String {
        match self {
            Conditioning::Empty => "empty".into(),
            Conditioning::Prompt(p) => format!("prompt:{p}"),
            Conditioning::Captions => "captions".into(),
            Conditioning::Clip { templates, .. } => format!("clip:{}", templates.join(" | ")),
        }
    }
}

/// DiT's class input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DitClass {
    /// The null class (num_classes), as the reference.
    Null,
    /// Each image's label.
    Label,
}

struct SdNet {
    unet: UNet2DConditionModel,
    text: ClipTextModel,
    tokenizer: ClipTokenizer,
}

enum Net {
    Sd(Box<SdNet>),
    Dit(Box<DiT>),
}

/// A loaded pipeline: the denoiser, the VAE and the noise schedule.
pub struct Backbone {
    net: Net,
    pub vae: AutoencoderKL,
    pub ddim: Ddim,
    /// A hash of every config file read (model, VAE, text encoder, scheduler).
    pub config_hash: String,
    /// Prompt embeddings by text, computed once.
    prompts: HashMap<String, Tensor>,
}

/// The noise schedule of a `scheduler_config.json`: extraction uses only `add_noise`, so only
/// the fields that shape the betas are read (missing ones take DDIMScheduler's defaults); the
/// settings of sampling steps (`clip_sample`, which PNDM configs omit and diffusers then
/// defaults to true, `thresholding`, the prediction type) do not matter here.
fn schedule(path: &Path) -> Result<Ddim> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not a JSON object of scheduler settings: {e}")))?;
    let d = DdimConfig::default();
    let num = |k: &str, v: f64| map.get(k).filter(|x| !x.is_null()).map_or(Some(v), |x| x.as_f64());
    let bad = |k: &str| Error::format(path, format!("`{k}` is not a number"));
    let cfg = DdimConfig {
        num_train_timesteps: num("num_train_timesteps", d.num_train_timesteps as f64).ok_or_else(|| bad("num_train_timesteps"))? as usize,
        beta_start: num("beta_start", d.beta_start).ok_or_else(|| bad("beta_start"))?,
        beta_end: num("beta_end", d.beta_end).ok_or_else(|| bad("beta_end"))?,
        beta_schedule: map.get("beta_schedule").and_then(|v| v.as_str()).map_or(d.beta_schedule.clone(), String::from),
        trained_betas: map.get("trained_betas").filter(|v| !v.is_null()).cloned(),
        clip_sample: false,
        ..d
    };
    Ddim::new(cfg).map_err(|e| Error::format(path, e.to_string()))
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

impl Backbone {
    /// Loads the pipeline folder `dir` in `dtype` on `device`: `unet/` makes it Stable
    /// Diffusion, `transformer/` DiT; anything else is an error saying what the folder is.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Backbone> {
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
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
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
        let ddim = match &sched {
            Some(s) => {
                let path = s.join("scheduler_config.json");
                files.push(path.clone());
                schedule(&path)?
            }
            None => Ddim::dit_default(),
        };
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for f in &files {
            let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
            h = fnv1a(&bytes, h);
        }
        Ok(Backbone { net, vae, ddim, config_hash: format!("{h:016x}"), prompts: HashMap::new() })
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

    /// The embedding of one prompt, [1, 77, D], computed once per text.
    fn prompt(&mut self, text: &str) -> Result<Tensor> {
        if let Some(t) = self.prompts.get(text) {
            return Ok(t.clone());
        }
        let Net::Sd(sd) = &self.net else {
            return Err(Error::BadOption("prompts are for Stable Diffusion".into()));
        };
        let ids = sd.tokenizer.encode_batch(&[text], 77)?;
        let e = sd.text.forward(&ids, false)?.last_hidden_state;
        self.prompts.insert(text.to_string(), e.clone());
        Ok(e)
    }

    /// The U-Net's encoder_hidden_states for a batch: [B, 77, D].
    pub fn conditioning(&mut self, cond: &Conditioning, entries: &[&ImageEntry], class_names: &[String]) -> Result<Tensor> {
        let texts: Vec<String> = match cond {
            Conditioning::Empty => vec![String::new(); entries.len()],
            Conditioning::Prompt(p) => entries
                .iter()
                .map(|e| {
                    let name = usize::try_from(e.label).ok().and_then(|l| class_names.get(l)).cloned().unwrap_or_else(|| e.label.to_string());
                    p.replace("{label}", &name)
                })
                .collect(),
            Conditioning::Clip { .. } => entries.iter().map(|e| e.prompt.clone().unwrap_or_default()).collect(),
            Conditioning::Captions => {
                // Captions are mostly distinct: one pass over the batch, nothing cached.
                let Net::Sd(sd) = &self.net else {
                    return Err(Error::BadOption("captions are for Stable Diffusion".into()));
                };
                let texts: Vec<&str> = entries.iter().map(|e| e.caption.as_deref().unwrap_or("")).collect();
                return Ok(sd.text.forward(&sd.tokenizer.encode_batch(&texts, 77)?, false)?.last_hidden_state);
            }
        };
        let rows = texts.iter().map(|t| self.prompt(t)).collect::<Result<Vec<_>>>()?;
        ops::cat(&rows.iter().collect::<Vec<_>>(), 0)
    }

    /// One forward pass recording `requests`, stopping after the deepest: x: [B, L, h, w]
    /// latents (already noised), t the timestep, `context` the U-Net's conditioning or `labels`
    /// DiT's classes. Returns the tapped values by request name, each [B, C, h', w'].
    pub fn forward(&self, x: &Tensor, t: usize, context: Option<&Tensor>, labels: Option<&Tensor>, requests: &[TapRequest]) -> Result<HashMap<String, Tensor>> {
        let b = x.dims()[0];
        let mut taps = Taps::new(requests.to_vec(), false);
        let ts = Tensor::from_vec(vec![t as f32; b], [b], &Device::Cpu)?;
        match &self.net {
            Net::Sd(sd) => {
                let ctx = context.ok_or_else(|| Error::Internal("the U-Net needs its conditioning".into()))?;
                sd.unet.forward(x, &ts, ctx, &mut taps)?;
            }
            Net::Dit(dit) => {
                let y = labels.ok_or_else(|| Error::Internal("DiT needs class labels".into()))?;
                let x = x.to_device(dit.device())?;
                dit.forward(&x, &ts, y, &mut taps)?;
            }
        }
        taps.into_values()
    }

    pub fn device(&self) -> &Device {
        self.vae.device()
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
