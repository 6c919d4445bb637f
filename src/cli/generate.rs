//! `revelio generate`: its arguments, `--preset concepts`, the library options they ask for
//! (the prompt file read here), and what it prints.

use super::args::{compute_dtype, device, float_dtype, secs, shard};
use crate::features::collect::Collect;
use crate::features::generate::{generate, GenerateOptions, INDEX};
use crate::features::prompts::{read_prompts, Prompt, PromptFormat};
use crate::features::store::Pooling;
use crate::models::hooks::Branch;
use crate::models::pipeline::Sampling;
use crate::{Error, Result};
use clap::Args;
use std::path::PathBuf;

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
        let device = device(&self.device)?;
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
                dtype: float_dtype("--collect-dtype", &self.collect_dtype)?,
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
            model_dtype: compute_dtype("--dtype", &self.dtype, &device)?,
            device,
            out: self.out.clone(),
            part: shard(&self.shard)?,
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
    println!("out: {} (index: {})", opts.out.display(), s.store.join(INDEX).display());
    if opts.part.1 > 1 {
        println!("when every part is done: revelio features merge {}", opts.out.display());
    }
    Ok(())
}
