//! Command-line arguments of `revelio extract`, `revelio generate` and `revelio features`, and
//! the text they print.

use super::conditioning::{Conditioning, DitClass};
use crate::models::pipeline::Posterior;
use super::dataset::{DatasetFormat, DatasetOptions};
use super::collect::Collect;
use super::extract::{extract, ExtractOptions};
use super::generate::{generate, GenerateOptions};
use super::prompts::{read_prompts, Prompt, PromptFormat};
use super::hf_parquet::Columns;
use super::merge::{find_parts, merge_parts};
use super::store::Pooling;
use crate::models::hooks::Branch;
use crate::models::pipeline::Sampling;
use crate::tensor::{DType, Device};
use crate::{Error, Result};
use clap::{Args, Subcommand};
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
    /// image's class name (e.g. "a photo of a {label}").
    #[arg(long, conflicts_with = "captions")]
    pub prompt: Option<String>,
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
    /// Parquet: the label column (default: label).
    #[arg(long)]
    pub label_column: Option<String>,
    /// Parquet: the caption column (for --captions).
    #[arg(long)]
    pub caption_column: Option<String>,
}

/// `revelio generate`: text-to-image DDIM sampling with classifier-free guidance, and the
/// activations it computes collected into a feature store.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A diffusers Stable Diffusion pipeline folder (unet/, vae/, text_encoder/, tokenizer/,
    /// scheduler/; a PNDM scheduler is replaced by DDIM built from its betas).
    #[arg(long)]
    pub model: PathBuf,
    /// One prompt.
    #[arg(long, conflicts_with = "prompts", required_unless_present = "prompts")]
    pub prompt: Option<String>,
    /// A prompt file: .txt (one prompt per line), .jsonl or .csv (a prompt column, and
    /// `negative_prompt` where the rows have one), or Hugging Face parquet files (a file or a
    /// folder) with a caption column.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// The file's kind when its name does not show it: txt, jsonl, csv or parquet.
    #[arg(long)]
    pub prompts_format: Option<String>,
    /// The prompt column (default: the first of prompt, caption, text, top_caption).
    #[arg(long)]
    pub prompt_column: Option<String>,
    /// The negative prompt of every prompt without its own (default: the empty prompt).
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    #[arg(long, default_value_t = 1)]
    pub images_per_prompt: usize,
    /// `concepts`: the stable-concepts study's setting (50 steps, guidance 7.5, 512 px; the
    /// deltas of down_blocks.2.attentions.1, mid_block.attentions.0 and up_blocks.1.attentions.0
    /// at steps 0, 24 and 49, both branches, every position a row). Flags given explicitly win.
    #[arg(long)]
    pub preset: Option<String>,
    /// DDIM steps (default 50).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Classifier-free guidance scale; 1 or less runs no CFG (default 7.5).
    #[arg(long)]
    pub guidance: Option<f32>,
    /// DDIM eta (default 0); its noise is drawn per (seed, sample, step).
    #[arg(long)]
    pub eta: Option<f32>,
    /// Seeds every draw: the initial latent of sample i depends only on (seed, i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image height and width in pixels, multiples of 8 (default 512).
    #[arg(long)]
    pub height: Option<usize>,
    #[arg(long)]
    pub width: Option<usize>,
    /// Prompts per U-Net call (each runs both CFG branches in one batch).
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// The dtype the models run in: f32 (the CPU's only one), or f16/bf16 on CUDA.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// The run folder (a rerun of the same command resumes).
    #[arg(long)]
    pub out: PathBuf,
    /// Part i of n (1-based), for several GPUs or a Slurm array: part i's store goes to
    /// <out>/part-i-of-n/ (images to <out>/images/); join with `revelio features merge <out>`.
    #[arg(long, default_value = "1/1")]
    pub shard: String,
    /// Start from these latents: a safetensors file with `latents` [N, 4, h, w] (row i for
    /// sample i), or a folder of per-sample files as --save-latents writes.
    #[arg(long)]
    pub init_latents: Option<PathBuf>,
    /// Write each sample's initial and final latents to <out>/latents/NNNNNN.safetensors.
    #[arg(long)]
    pub save_latents: bool,
    /// Write no images (collection only).
    #[arg(long)]
    pub no_images: bool,
    /// Taps to collect while sampling: module paths or aliases, `:delta` for output minus
    /// input (e.g. mid_block.attentions.0:delta). An unknown one lists the valid ones.
    #[arg(long, value_delimiter = ',')]
    pub collect: Vec<String>,
    /// Sampling steps to collect at (0 = the first, the noisiest), or `all`.
    #[arg(long)]
    pub collect_steps: Option<String>,
    /// cond, uncond or both (default both with CFG, cond without).
    #[arg(long)]
    pub collect_branch: Option<String>,
    /// tokens (every position a row, [h*w, C]), mean ([C]) or none ([C, h, w]) (default tokens).
    #[arg(long)]
    pub collect_pooling: Option<String>,
    /// Storage dtype of the collected features: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub collect_dtype: String,
    /// Samples per store shard (a power of two up to 64; the unit of resuming).
    #[arg(long)]
    pub shard_size: Option<usize>,
    /// Stop after this many shards (a rerun resumes).
    #[arg(long)]
    pub max_shards: Option<usize>,
}

/// The settings `--preset concepts` gives (shared/spec/stable-concepts.md section 1). The spec
/// cannot tell whether its t = 0.5 is step 24 or 25 of 50: the preset takes 24;
/// `--collect-steps 0,25,49` takes the other.
struct Preset {
    steps: usize,
    guidance: f32,
    size: usize,
    collect: &'static [&'static str],
    collect_steps: &'static str,
}

const CONCEPTS: Preset = Preset {
    steps: 50,
    guidance: 7.5,
    size: 512,
    collect: &["down_blocks.2.attentions.1:delta", "mid_block.attentions.0:delta", "up_blocks.1.attentions.0:delta"],
    collect_steps: "0,24,49",
};

impl GenerateArgs {
    /// The library options these arguments ask for (the prompt file read here), and the
    /// notice about prompt rows skipped.
    pub fn options(&self) -> Result<(GenerateOptions, Option<String>)> {
        let preset = match self.preset.as_deref() {
            None => None,
            Some("concepts") => Some(&CONCEPTS),
            Some(o) => return Err(Error::BadOption(format!("--preset {o}: the presets are: concepts"))),
        };
        let (prompts, source, notice) = match (&self.prompt, &self.prompts) {
            (Some(p), _) => (vec![Prompt { text: p.clone(), negative: None, source_row: 0 }], "--prompt".to_string(), None),
            (None, Some(path)) => {
                let format = self.prompts_format.as_deref().map(PromptFormat::parse).transpose()?;
                let r = read_prompts(path, format, self.prompt_column.as_deref())?;
                let notice = r.notice(path);
                let source = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()).display().to_string();
                (r.prompts, source, notice)
            }
            (None, None) => return Err(Error::BadOption("give --prompt TEXT or --prompts FILE".into())),
        };
        let steps = self.steps.or(preset.map(|p| p.steps)).unwrap_or(50);
        let guidance = self.guidance.or(preset.map(|p| p.guidance)).unwrap_or(7.5);
        let sampling = Sampling { steps, guidance, eta: self.eta.unwrap_or(0.0), seed: self.seed };
        let size = |v: Option<usize>| v.or(preset.map(|p| p.size)).unwrap_or(512);
        let taps: Vec<String> = match (self.collect.is_empty(), preset) {
            (false, _) => self.collect.clone(),
            (true, Some(p)) => p.collect.iter().map(|s| s.to_string()).collect(),
            (true, None) => Vec::new(),
        };
        let collect = if taps.is_empty() {
            if self.collect_steps.is_some() || self.collect_branch.is_some() || self.collect_pooling.is_some() {
                return Err(Error::BadOption("--collect-steps, --collect-branch and --collect-pooling need --collect TAPS".into()));
            }
            None
        } else {
            let steps_arg = self.collect_steps.as_deref().or(preset.map(|p| p.collect_steps)).unwrap_or("all");
            let collect_steps = if steps_arg == "all" {
                (0..steps).collect()
            } else {
                steps_arg
                    .split(',')
                    .map(|s| s.trim().parse::<usize>().map_err(|_| Error::BadOption(format!("--collect-steps {steps_arg}: expected `all` or steps such as 0,24,49"))))
                    .collect::<Result<Vec<_>>>()?
            };
            let branches = match self.collect_branch.as_deref() {
                Some("both") => vec![Branch::Uncond, Branch::Cond],
                Some(b) => vec![Branch::parse(b, "--collect-branch")?],
                None if sampling.cfg() => vec![Branch::Uncond, Branch::Cond],
                None => vec![Branch::Cond],
            };
            Some(Collect {
                taps,
                steps: collect_steps,
                branches,
                pooling: Pooling::parse(self.collect_pooling.as_deref().unwrap_or("tokens"))?,
                dtype: dtype("--collect-dtype", &self.collect_dtype)?,
            })
        };
        let opts = GenerateOptions {
            model: self.model.clone(),
            prompts,
            prompts_source: source,
            negative_prompt: self.negative_prompt.clone(),
            images_per_prompt: self.images_per_prompt,
            sampling,
            height: size(self.height),
            width: size(self.width),
            batch_size: self.batch_size,
            model_dtype: dtype("--dtype", &self.dtype)?,
            device: Device::parse(&self.device)?,
            out: self.out.clone(),
            part: parse_shard(&self.shard)?,
            init_latents: self.init_latents.clone(),
            save_latents: self.save_latents,
            write_images: !self.no_images,
            collect,
            shard_size: self.shard_size,
            max_shards: self.max_shards,
        };
        Ok((opts, notice))
    }
}

/// Runs `revelio generate` and prints its notices and summary.
pub fn run_generate(args: &GenerateArgs) -> Result<()> {
    let (opts, notice) = args.options()?;
    if let Some(n) = notice {
        eprintln!("note: {n}");
    }
    let s = generate(&opts, true)?;
    println!(
        "generate: {} images in {:.1} s ({:.2} img/s); {} already done",
        s.generated,
        secs(s.elapsed),
        s.images_per_second(),
        s.already_done
    );
    println!(
        "time: prompts and latents {:.1} s, sampling (U-Net, {} steps) {:.1} s, VAE decode {:.1} s, write {:.1} s",
        secs(s.text),
        opts.sampling.steps,
        secs(s.sampling),
        secs(s.decode),
        secs(s.write)
    );
    if s.stopped {
        println!("stopped after {} shards (--max-shards); rerun the same command to go on", s.shards_written);
    }
    println!("out: {} (index: {})", opts.out.display(), s.store.join(super::generate::INDEX).display());
    if opts.part.1 > 1 {
        println!("when every part is done: revelio features merge {}", opts.out.display());
    }
    Ok(())
}

/// `revelio features ...`
#[derive(Subcommand, Debug)]
pub enum FeaturesCommand {
    /// Join the parts of a sharded extraction (<dir>/part-I-of-N/) into one feature store.
    Merge {
        /// The --out folder of the sharded run.
        dir: PathBuf,
        /// Where the merged store goes (default: <dir> itself).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::BadOption(format!("--shard {s}: expected i/n with 1 <= i <= n (e.g. $SLURM_ARRAY_TASK_ID/8)"));
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if i == 0 || i > n {
        return Err(bad());
    }
    Ok((i - 1, n))
}

fn dtype(flag: &str, s: &str) -> Result<DType> {
    DType::parse(s).filter(|d| d.is_float()).ok_or_else(|| Error::BadOption(format!("{flag} {s}: expected f32, f16 or bf16")))
}

impl ExtractArgs {
    /// The library options these arguments ask for.
    pub fn options(&self) -> Result<ExtractOptions> {
        let format = self.format.as_deref().map(DatasetFormat::parse).transpose()?;
        let conditioning = match (&self.prompt, self.captions) {
            (Some(p), _) => Conditioning::Prompt(p.clone()),
            (None, true) => Conditioning::Captions,
            (None, false) => Conditioning::Empty,
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
            dtype: dtype("--dtype", &self.dtype)?,
            model_dtype: dtype("--model-dtype", &self.model_dtype)?,
            device: Device::parse(&self.device)?,
            seed: self.seed,
            noise_draws: self.noise_draws,
            posterior,
            conditioning,
            dit_noise: self.dit_noise,
            dit_class,
            part: parse_shard(&self.shard)?,
            shard_size: self.shard_size,
            latent_cache: self.latent_cache.clone(),
            workers: self.workers,
            max_shards: self.max_shards,
        })
    }
}

fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
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

/// Runs `revelio features <command>`.
pub fn run_features(cmd: &FeaturesCommand) -> Result<()> {
    match cmd {
        FeaturesCommand::Merge { dir, out } => {
            let parts = find_parts(dir)?;
            let out = out.clone().unwrap_or_else(|| dir.clone());
            let m = merge_parts(&parts, &out)?;
            println!(
                "merged {} parts: {} images in {} shards, {} failures -> {}",
                parts.len(),
                m.images.len(),
                m.shards.len(),
                m.failures.len(),
                out.display()
            );
            Ok(())
        }
    }
}
