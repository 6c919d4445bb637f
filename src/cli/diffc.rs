//! `revelio diffc train|eval|sweep`: the arguments (clap) and what each subcommand runs.

use super::args::{compute_dtype, device};
use crate::diffc::data::{FeatureSource, FileSource, Split, StoreSource, TokenLayout};
use crate::diffc::eval::{evaluate, write_report};
use crate::diffc::model::DiffcClassifier;
use crate::diffc::online::{check_layers, report, BatchPlan, OnlineOptions, OnlineSource, TestNoise, ONLINE_REPORT};
use crate::diffc::sweep::{sweep, sweep_store};
use crate::diffc::train::{read_run_config, train, ModelOptions, TrainConfig, TrainSummary, BEST_WEIGHTS, WEIGHTS};
use crate::features::conditioning::{Conditioning, DitClass};
use crate::features::dataset::DatasetFormat;
use crate::features::hf_parquet::Columns;
use crate::io::write_atomic;
use crate::tensor::{DType, Device};
use crate::{Error, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args, Debug)]
pub struct DiffcArgs {
    #[command(subcommand)]
    pub command: DiffcCommand,
}

#[derive(Subcommand, Debug)]
pub enum DiffcCommand {
    /// Train a classifier on one layer and timestep's feature maps (resumes a run in --out).
    Train(Box<TrainArgs>),
    /// Top-1, per-class accuracy and confusion matrix of a trained classifier.
    Eval(EvalArgs),
    /// Train one classifier per (layer, timestep); write a table and a plot.
    Sweep(SweepArgs),
}

/// Training options shared by `train` and `sweep`. Defaults are the reference's (train.py),
/// except --cosine-epochs (default: --epochs); the reference is --epochs 30 --cosine-epochs 90,
/// and its run.sh passes --dropout 0.
#[derive(Args, Debug, Clone)]
pub struct TrainOptions {
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// T_max of the cosine schedule, in epochs (default: --epochs).
    #[arg(long)]
    pub cosine_epochs: Option<usize>,
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f32,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f32,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Test batch (default: 2 x --batch-size, as the reference; it does not change results).
    #[arg(long)]
    pub test_batch_size: Option<usize>,
    /// p of every Dropout2d and of the Dropout before fc.
    #[arg(long, default_value_t = 0.5)]
    pub dropout: f32,
    /// Channels of every conv block.
    #[arg(long, default_value_t = 1024)]
    pub width: usize,
    /// Number of conv blocks (the first keeps the size, the others halve it).
    #[arg(long, default_value_t = 4)]
    pub depth: usize,
    /// Per-block channels, e.g. 512,512,256 (overrides --width and --depth).
    #[arg(long, value_delimiter = ',')]
    pub widths: Option<Vec<usize>>,
    /// Number of classes (default: the store's class names, else the largest label + 1).
    #[arg(long)]
    pub num_classes: Option<usize>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Compute dtype: f32, or bf16 / f16 on CUDA (parameters and optimizer stay f32).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// The store's split to train on.
    #[arg(long, default_value = "train")]
    pub train_split: String,
    /// The store's split to report top-1 on every epoch.
    #[arg(long, default_value = "test")]
    pub test_split: String,
    /// DiT features: `map` (ours: channel c at (y, x) is the patch at row y, column x) or `view`
    /// (the reference's DiTClassifier_V4: the [T, D] token buffer viewed raw as [D, h, w],
    /// channels and positions scrambled).
    #[arg(long, default_value = "map")]
    pub token_layout: String,
}

impl TrainOptions {
    fn model(&self) -> ModelOptions {
        ModelOptions {
            widths: self.widths.clone().unwrap_or_else(|| vec![self.width; self.depth]),
            dropout: self.dropout,
            num_classes: self.num_classes,
        }
    }

    fn layout(&self) -> Result<TokenLayout> {
        TokenLayout::parse(&self.token_layout)
    }

    fn train(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            cosine_epochs: self.cosine_epochs.unwrap_or(self.epochs),
            lr: self.lr,
            weight_decay: self.weight_decay,
            batch_size: self.batch_size,
            test_batch_size: self.test_batch_size.unwrap_or(2 * self.batch_size),
            seed: self.seed,
            dtype: self.dtype.clone(),
        }
    }
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// A feature store written by `revelio extract` (--pooling none or avg:HxW).
    #[arg(long, conflicts_with_all = ["input", "online"])]
    pub features: Option<PathBuf>,
    /// A safetensors file with train_features [N, C, h, w], train_labels [N], test_features,
    /// test_labels.
    #[arg(long, conflicts_with = "online")]
    pub input: Option<PathBuf>,
    /// Compute the features on the fly, the reference's protocol: every epoch each train image is
    /// augmented, encoded, noised afresh and run through the model up to --layer (with --model
    /// and --dataset).
    #[arg(long, requires_all = ["model", "dataset"])]
    pub online: bool,
    #[command(flatten)]
    pub online_opts: OnlineArgs,
    /// The layer (mid, up.0, up.1, ...): the store's with --features, the model's with --online.
    #[arg(long)]
    pub layer: Option<String>,
    /// The timestep (an index into the 1000-step training schedule).
    #[arg(long)]
    pub timestep: Option<usize>,
    /// The run folder: weights, config, metrics, checkpoint.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub opts: TrainOptions,
}

/// Options of `train --online`. Its splits are the dataset's own: --train-split and
/// --test-split name them (an ImageFolder's folders root/<split>/<class>/<image>, a manifest's
/// split column, HF parquet split files).
#[derive(Args, Debug)]
pub struct OnlineArgs {
    /// A diffusers pipeline folder (Stable Diffusion: unet/, vae/, text_encoder/, tokenizer/,
    /// scheduler/; or DiT: transformer/, vae/).
    #[arg(long, requires = "online")]
    pub model: Option<PathBuf>,
    /// The images: an ImageFolder root holding train/ and test/ folders of <class>/<image>, a
    /// .csv or .jsonl manifest with a split column, or Hugging Face parquet files.
    #[arg(long, alias = "data", requires = "online")]
    pub dataset: Option<PathBuf>,
    /// Image size: train images are random-resized-cropped to it, test images resized and
    /// center-cropped (the reference: 512).
    #[arg(long, default_value_t = 512, requires = "online")]
    pub resolution: usize,
    /// The dtype the VAE and U-Net run in: auto (bf16 on a GPU, f32 on the CPU), f32, bf16, f16.
    #[arg(long, default_value = "auto", requires = "online")]
    pub model_dtype: String,
    /// Test-time noise: epoch (fresh every epoch, as the reference) or fixed (the same every
    /// epoch: the noise `revelio extract --seed SEED` gives each test image).
    #[arg(long, default_value = "epoch", requires = "online")]
    pub test_noise: String,
    /// Condition the U-Net on this prompt instead of the empty one; `{label}` becomes the
    /// image's true class name, which leaks the label into the features: a classifier on them
    /// is not label-free.
    #[arg(long, conflicts_with = "captions", requires = "online")]
    pub prompt: Option<String>,
    /// Condition the U-Net on each image's caption (--caption-column for parquet).
    #[arg(long, requires = "online")]
    pub captions: bool,
    /// DiT: add noise at the timestep (the reference feeds the clean latent).
    #[arg(long, requires = "online")]
    pub dit_noise: bool,
    /// DiT's class input: null (the reference) or label.
    #[arg(long, default_value = "null", requires = "online")]
    pub dit_class: String,
    /// Decode threads (default: all cores).
    #[arg(long, requires = "online")]
    pub workers: Option<usize>,
    /// Dataset kind, if its path does not show it: imagefolder, csv, jsonl, parquet.
    #[arg(long, requires = "online")]
    pub format: Option<String>,
    /// Parquet: the image column (default: the HF Image feature, or image/img).
    #[arg(long, requires = "online")]
    pub image_column: Option<String>,
    /// Parquet: the label column (default: label, else variant as for FGVC-Aircraft).
    #[arg(long, requires = "online")]
    pub label_column: Option<String>,
    /// Parquet: the caption column (for --captions).
    #[arg(long, requires = "online")]
    pub caption_column: Option<String>,
}

impl OnlineArgs {
    /// The online source's options for a run with `layer`, `timestep` and the training options.
    pub fn options(&self, layer: &str, timestep: usize, opts: &TrainOptions, device: &Device) -> Result<OnlineOptions> {
        let (Some(model), Some(dataset)) = (&self.model, &self.dataset) else {
            return Err(Error::BadOption("--online needs --model PIPELINE_DIR and --dataset DATASET".into()));
        };
        let model_dtype = match self.model_dtype.as_str() {
            "auto" if device.is_cpu() => DType::F32,
            "auto" => DType::BF16,
            s => DType::parse(s)
                .filter(|d| d.is_float())
                .ok_or_else(|| Error::BadOption(format!("--model-dtype {s}: expected auto, f32, bf16 or f16")))?,
        };
        let conditioning = match (&self.prompt, self.captions) {
            (Some(p), _) => Conditioning::Prompt(p.clone()),
            (None, true) => Conditioning::Captions,
            (None, false) => Conditioning::Empty,
        };
        let dit_class = match self.dit_class.as_str() {
            "null" => DitClass::Null,
            "label" => DitClass::Label,
            o => return Err(Error::BadOption(format!("--dit-class {o}: expected null or label"))),
        };
        let train = opts.train();
        Ok(OnlineOptions {
            model: model.clone(),
            dataset: dataset.clone(),
            format: self.format.as_deref().map(DatasetFormat::parse).transpose()?,
            columns: Columns { image: self.image_column.clone(), label: self.label_column.clone(), caption: self.caption_column.clone() },
            train_split: opts.train_split.clone(),
            test_split: opts.test_split.clone(),
            layer: layer.to_string(),
            timestep,
            resolution: self.resolution,
            model_dtype,
            device: device.clone(),
            seed: opts.seed,
            conditioning,
            test_noise: TestNoise::parse(&self.test_noise)?,
            dit_noise: self.dit_noise,
            dit_class,
            token_layout: opts.layout()?,
            workers: self.workers,
            plan: BatchPlan { batch_size: train.batch_size, test_batch_size: train.test_batch_size, epochs: train.epochs },
        })
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A run folder written by `revelio diffc train`.
    #[arg(long)]
    pub classifier: PathBuf,
    /// A feature store (default layer and timestep: the run's).
    #[arg(long, required_unless_present = "input", conflicts_with = "input")]
    pub features: Option<PathBuf>,
    /// A safetensors file as for `train --input`.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// The store's layer (default: the one the classifier was trained on).
    #[arg(long)]
    pub layer: Option<String>,
    /// The store's timestep (default: the one the classifier was trained on).
    #[arg(long)]
    pub timestep: Option<usize>,
    /// With --features: the store's split to evaluate. With --input: `train` or `test`.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Which weights: `last` (classifier.safetensors) or `best` (classifier_best.safetensors).
    #[arg(long, default_value = "last")]
    pub weights: String,
    /// Where eval.json, confusion.json and confusion.png go (default: the run folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Feature maps per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// auto (the first GPU, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Compute dtype: f32, or bf16 / f16 on a GPU.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// A feature store holding every (layer, timestep) of the sweep.
    #[arg(long, required_unless_present = "online", conflicts_with = "online")]
    pub features: Option<PathBuf>,
    /// Compute each run's features on the fly, as `train --online` (with --model and --dataset).
    #[arg(long, requires_all = ["model", "dataset"])]
    pub online: bool,
    #[command(flatten)]
    pub online_opts: OnlineArgs,
    /// Comma-separated layers, e.g. mid,up.0,up.1,up.2.
    #[arg(long, value_delimiter = ',', required = true)]
    pub layers: Vec<String>,
    /// Comma-separated timesteps, e.g. 0,25,50,100,200,500.
    #[arg(long, value_delimiter = ',', required = true)]
    pub timesteps: Vec<usize>,
    /// The sweep folder: one run folder per (layer, timestep), sweep.csv, sweep.json, sweep.png.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub opts: TrainOptions,
}

fn store_layer(layer: &Option<String>, timestep: Option<usize>) -> Result<(String, usize)> {
    layer_timestep(layer, timestep, "--features")
}

fn layer_timestep(layer: &Option<String>, timestep: Option<usize>, what: &str) -> Result<(String, usize)> {
    match (layer, timestep) {
        (Some(l), Some(t)) => Ok((l.clone(), t)),
        _ => Err(Error::BadOption(format!("{what} needs --layer and --timestep (e.g. --layer up.1 --timestep 25)"))),
    }
}

fn print_summary(s: &TrainSummary, out: &Path) {
    println!(
        "diffc: {} epochs, {} classes, {} parameters; test top-1 last {:.4} (epoch {}), best {:.4} (epoch {}); run in {}",
        s.epochs,
        s.num_classes,
        s.num_params,
        s.last_test_accuracy,
        s.last_epoch,
        s.best_test_accuracy,
        s.best_epoch,
        out.display()
    );
}

pub fn run_train(a: &TrainArgs) -> Result<()> {
    let device = device(&a.opts.device)?;
    let mut source: Box<dyn FeatureSource> = match (&a.features, &a.input, a.online) {
        (Some(store), None, false) => {
            let (layer, t) = store_layer(&a.layer, a.timestep)?;
            Box::new(StoreSource::open(store, &layer, t, &a.opts.train_split, &a.opts.test_split, a.opts.layout()?)?)
        }
        (None, Some(file), false) => Box::new(FileSource::open(file)?),
        (None, None, true) => return run_online(a, &device),
        _ => {
            return Err(Error::BadOption(
                "give one of --features STORE, --input FILE, or --online --model PIPELINE_DIR --dataset DATASET".into(),
            ))
        }
    };
    let s = train(source.as_mut(), &a.opts.model(), &a.opts.train(), &a.out, &device)?;
    print_summary(&s, &a.out);
    Ok(())
}

/// `train --online`: trains, then prints and writes (`online.json`) the loop's images/s and
/// where its time went.
fn run_online(a: &TrainArgs, device: &Device) -> Result<()> {
    let (layer, t) = layer_timestep(&a.layer, a.timestep, "--online")?;
    let mut source = OnlineSource::open(&a.online_opts.options(&layer, t, &a.opts, device)?)?;
    let start = Instant::now();
    let s = train(&mut source, &a.opts.model(), &a.opts.train(), &a.out, device)?;
    let (text, json) = report(source.stats(), start.elapsed(), source.model_name());
    print_summary(&s, &a.out);
    println!("{text}");
    write_atomic(&a.out.join(ONLINE_REPORT), serde_json::to_string_pretty(&json).expect("JSON").as_bytes())
}

pub fn run_eval(a: &EvalArgs) -> Result<()> {
    let device = device(&a.device)?;
    let dtype = compute_dtype("--dtype", &a.dtype, &device)?;
    let config = read_run_config(&a.classifier)?;
    let file = match a.weights.as_str() {
        "last" => WEIGHTS,
        "best" => BEST_WEIGHTS,
        other => return Err(Error::BadOption(format!("--weights {other}: expected last or best"))),
    };
    let model = DiffcClassifier::load(&a.classifier.join(file), 0.0, &device)?;
    let (mut source, split): (Box<dyn FeatureSource>, Split) = match (&a.features, &a.input) {
        (Some(store), None) => {
            let src = config.get("source");
            let layer = a.layer.clone().or_else(|| src.and_then(|s| s.get("layer")).and_then(|v| v.as_str()).map(String::from));
            let t = a.timestep.or_else(|| src.and_then(|s| s.get("timestep")).and_then(|v| v.as_u64()).map(|t| t as usize));
            let (layer, t) = store_layer(&layer, t)?;
            let layout = TokenLayout::parse(src.and_then(|s| s.get("token_layout")).and_then(|v| v.as_str()).unwrap_or("map"))?;
            // One store split is evaluated; it fills both slots of the source.
            (Box::new(StoreSource::open(store, &layer, t, &a.split, &a.split, layout)?), Split::Test)
        }
        (None, Some(path)) => {
            let split = match a.split.as_str() {
                "train" => Split::Train,
                "test" => Split::Test,
                other => return Err(Error::BadOption(format!("--split {other}: a features file has `train` and `test`"))),
            };
            (Box::new(FileSource::open(path)?), split)
        }
        _ => return Err(Error::BadOption("give either --features STORE or --input FILE".into())),
    };
    let [c, _, _] = source.feature_shape();
    if c != model.config.in_channels {
        return Err(Error::BadInput(format!("the features have {c} channels, the classifier takes {}", model.config.in_channels)));
    }
    let mut report = evaluate(&model, source.as_mut(), split, a.batch_size, dtype, &device)?;
    report.split = a.split.clone();
    let out: &Path = a.out.as_deref().unwrap_or(&a.classifier);
    write_report(&report, out)?;
    println!(
        "diffc eval: {} images of `{}`: top-1 {:.4}, mean per-class {:.4}, loss {:.4}; wrote {}/{{eval.json, confusion.json, confusion.png}}",
        report.images,
        report.split,
        report.top1,
        report.mean_class_accuracy,
        report.loss,
        out.display()
    );
    Ok(())
}

pub fn run_sweep(a: &SweepArgs) -> Result<()> {
    let device = device(&a.opts.device)?;
    if a.layers.is_empty() || a.timesteps.is_empty() {
        return Err(Error::BadOption("diffc sweep: give at least one layer and one timestep".into()));
    }
    let (model, train_cfg, out) = (a.opts.model(), a.opts.train(), &a.out);
    let rows = match (&a.features, a.online) {
        (Some(store), false) => sweep_store(store, &a.layers, &a.timesteps, (&a.opts.train_split, &a.opts.test_split), a.opts.layout()?, &model, &train_cfg, out, &device)?,
        (None, true) => {
            check_layers(&a.online_opts.options(&a.layers[0], a.timesteps[0], &a.opts, &device)?, &a.layers, &a.timesteps)?;
            let mut open = |layer: &str, t: usize| -> Result<Box<dyn FeatureSource>> {
                Ok(Box::new(OnlineSource::open(&a.online_opts.options(layer, t, &a.opts, &device)?)?))
            };
            sweep(&a.layers, &a.timesteps, &mut open, &model, &train_cfg, out, &device)?
        }
        _ => return Err(Error::BadOption("diffc sweep: give --features STORE or --online --model PIPELINE_DIR --dataset DATASET".into())),
    };
    println!("{:<10} {:>8} {:>10} {:>10}", "layer", "timestep", "last top1", "best top1");
    for r in &rows {
        println!("{:<10} {:>8} {:>10.4} {:>10.4}", r.layer, r.timestep, r.last_test_accuracy, r.best_test_accuracy);
    }
    println!("wrote {}/{{sweep.csv, sweep.json, sweep.png}}", a.out.display());
    Ok(())
}

pub fn run(args: &DiffcArgs) -> Result<()> {
    match &args.command {
        DiffcCommand::Train(a) => run_train(a),
        DiffcCommand::Eval(a) => run_eval(a),
        DiffcCommand::Sweep(a) => run_sweep(a),
    }
}
