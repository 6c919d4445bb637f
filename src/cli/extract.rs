//! `revelio extract`: its arguments, the library options they ask for, and the summary it prints.

use super::args::{compute_dtype, device, float_dtype, secs, shard};
use crate::features::clip_prompts::{read_templates, DEFAULT_TEMPLATE};
use crate::features::conditioning::{Conditioning, DitClass};
use crate::features::dataset::{DatasetFormat, DatasetOptions};
use crate::features::extract::{extract, ExtractOptions};
use crate::features::hf_parquet::Columns;
use crate::features::store::Pooling;
use crate::models::pipeline::Posterior;
use crate::{Error, Result};
use clap::Args;
use std::path::PathBuf;

/// `revelio extract`: stored diffusion features for every image of a dataset.
#[derive(Args, Debug)]
pub struct ExtractArgs {
    /// A diffusers pipeline folder: Stable Diffusion (unet/, vae/, text_encoder/, tokenizer/,
    /// scheduler/) or DiT (transformer/, vae/).
    #[arg(long)]
    pub model: PathBuf,
    /// The images: an ImageFolder (root/<class>/<image>), a .csv or .jsonl manifest (path,
    /// label[, caption][, split]), or Hugging Face parquet files (a folder or one file).
    #[arg(long)]
    pub data: PathBuf,
    /// The feature-store folder to write (or resume).
    #[arg(long)]
    pub out: PathBuf,
    /// Layers (taps) to store: U-Net `mid`, `up.0`..`up.3`, `down.N` or any module path;
    /// DiT `block.N`. An unknown name lists what the model offers.
    #[arg(long, value_delimiter = ',', default_value = "mid")]
    pub layers: Vec<String>,
    /// Timesteps: indices into the 1000-step training schedule, fed to add_noise and the model.
    #[arg(long, value_delimiter = ',', default_value = "25")]
    pub timesteps: Vec<usize>,
    /// Short side resized to this, then center-cropped square (the reference: 512 for Diff-C, 256
    /// for its k-SAE features).
    #[arg(long, default_value_t = 512)]
    pub resolution: usize,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// mean ([C], the k-SAE input), none ([C, h, w], the Diff-C input), tokens ([h*w, C]) or
    /// avg:HxW ([C, H, W]).
    #[arg(long, default_value = "mean")]
    pub pooling: String,
    /// Storage dtype: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// The dtype the models run in: f32 (the reference; the CPU's only one), or f16/bf16 on CUDA.
    #[arg(long, default_value = "f32")]
    pub model_dtype: String,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Seeds the noise (image i, timestep t, draw d: a stream of its own).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Average the features over this many noise draws (DiT: with --dit-noise only).
    #[arg(long, default_value_t = 1)]
    pub noise_draws: usize,
    /// The VAE latent: mean (the posterior mean, the reference) or sample (seeded per image).
    #[arg(long, default_value = "mean")]
    pub posterior: String,
    /// Condition the U-Net on this prompt instead of the empty one; `{label}` becomes the
    /// image's true class name (e.g. "a photo of a {label}"), which leaks the label into the
    /// features: a classifier on them is not label-free. --prompt-from-clip is the leak-free way.
    #[arg(long, conflicts_with_all = ["captions", "prompt_from_clip"])]
    pub prompt: Option<String>,
    /// Condition each image on the class prompt this CLIP model (a transformers CLIPModel folder,
    /// e.g. openai/clip-vit-base-patch32) scores best for it, as the reference's from_CLIP
    /// (templates x the dataset's class names; no label is read). The choice is recorded per
    /// image in manifest.json (`images[i].prompt`).
    #[arg(long, value_name = "CLIP_DIR", conflicts_with = "captions")]
    pub prompt_from_clip: Option<PathBuf>,
    /// The templates of --prompt-from-clip: one per line with `{}` (or `{label}`) for the class
    /// name, the reference's format, e.g. "A photo of a {}, a type of pet."; default: one
    /// template, "a photo of a {}.".
    #[arg(long, value_name = "FILE", requires = "prompt_from_clip")]
    pub prompt_templates: Option<PathBuf>,
    /// Condition the U-Net on each image's caption (--caption-column for parquet).
    #[arg(long)]
    pub captions: bool,
    /// DiT: add noise at the timestep (the reference feeds the clean latent).
    #[arg(long)]
    pub dit_noise: bool,
    /// DiT's class input: null (the reference) or label.
    #[arg(long, default_value = "null")]
    pub dit_class: String,
    /// Part i of n (1-based), for several GPUs or a Slurm array: writes <out>/part-i-of-n/;
    /// join the parts with `revelio features merge <out>`.
    #[arg(long, default_value = "1/1")]
    pub shard: String,
    /// Images per store shard (a power of two up to 256); default: the largest under 256 MiB.
    #[arg(long)]
    pub shard_size: Option<usize>,
    /// Keep the VAE latents here and reuse them (other timesteps, layers or pooling later).
    #[arg(long)]
    pub latent_cache: Option<PathBuf>,
    /// Decode threads (default: all cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Stop after writing this many shards (a rerun resumes).
    #[arg(long)]
    pub max_shards: Option<usize>,
    /// Dataset kind, if its path does not show it: imagefolder, csv, jsonl, parquet.
    #[arg(long)]
    pub format: Option<String>,
    /// Keep only this split (train, test, ...).
    #[arg(long)]
    pub split: Option<String>,
    /// Parquet: the image column (default: the HF Image feature, or image/img).
    #[arg(long)]
    pub image_column: Option<String>,
    /// Parquet: the label column (default: label, else variant as for FGVC-Aircraft).
    #[arg(long)]
    pub label_column: Option<String>,
    /// Parquet: the caption column (for --captions).
    #[arg(long)]
    pub caption_column: Option<String>,
}

impl ExtractArgs {
    /// The library options these arguments ask for.
    pub fn options(&self) -> Result<ExtractOptions> {
        let device = device(&self.device)?;
        let format = self.format.as_deref().map(DatasetFormat::parse).transpose()?;
        let conditioning = match (&self.prompt, &self.prompt_from_clip, self.captions) {
            (Some(p), _, _) => Conditioning::Prompt(p.clone()),
            (None, Some(model), _) => Conditioning::Clip {
                model: model.clone(),
                templates: match &self.prompt_templates {
                    Some(f) => read_templates(f)?,
                    None => vec![DEFAULT_TEMPLATE.to_string()],
                },
            },
            (None, None, true) => Conditioning::Captions,
            (None, None, false) => Conditioning::Empty,
        };
        let posterior = match self.posterior.as_str() {
            "mean" => Posterior::Mean,
            "sample" => Posterior::Sample,
            o => return Err(Error::BadOption(format!("--posterior {o}: expected mean or sample"))),
        };
        let dit_class = match self.dit_class.as_str() {
            "null" => DitClass::Null,
            "label" => DitClass::Label,
            o => return Err(Error::BadOption(format!("--dit-class {o}: expected null or label"))),
        };
        Ok(ExtractOptions {
            model: self.model.clone(),
            dataset: self.data.clone(),
            dataset_options: DatasetOptions {
                format,
                split: self.split.clone(),
                columns: Columns { image: self.image_column.clone(), label: self.label_column.clone(), caption: self.caption_column.clone() },
            },
            out: self.out.clone(),
            layers: self.layers.clone(),
            timesteps: self.timesteps.clone(),
            resolution: self.resolution,
            batch_size: self.batch_size,
            pooling: Pooling::parse(&self.pooling)?,
            dtype: float_dtype("--dtype", &self.dtype)?,
            model_dtype: compute_dtype("--model-dtype", &self.model_dtype, &device)?,
            device,
            seed: self.seed,
            noise_draws: self.noise_draws,
            posterior,
            conditioning,
            dit_noise: self.dit_noise,
            dit_class,
            part: shard(&self.shard)?,
            shard_size: self.shard_size,
            latent_cache: self.latent_cache.clone(),
            workers: self.workers,
            max_shards: self.max_shards,
        })
    }
}

/// Runs `revelio extract` and prints its summary.
pub fn run_extract(args: &ExtractArgs) -> Result<()> {
    let opts = args.options()?;
    let s = extract(&opts, true)?;
    println!(
        "extract: {} images in {:.1} s ({:.1} img/s); {} already stored; {} failures{}",
        s.processed,
        secs(s.elapsed),
        s.images_per_second(),
        s.already_done,
        s.failures,
        if s.failures > 0 { " (listed in manifest.json)" } else { "" }
    );
    println!(
        "time: decode {:.1} s on the pool (the model waited {:.1} s for it), VAE {:.1} s, {} {:.1} s, write {:.1} s",
        secs(s.decode),
        secs(s.decode_wait),
        secs(s.vae),
        s.model_name,
        secs(s.model),
        secs(s.write)
    );
    if s.stopped {
        println!("stopped after {} shards (--max-shards); rerun the same command to go on", s.shards_written);
    }
    println!("store: {}", s.out.display());
    if opts.part.1 > 1 {
        println!("when every part is done: revelio features merge {}", opts.out.display());
    }
    Ok(())
}
