//! The demo's steps. Each real step is a revelio command line, printed as the user would type
//! it, parsed by that command's own clap definitions and run through the library function the
//! CLI calls, so its defaults, checks and outputs are the command's: copying the printed line
//! into a shell redoes the step.

use super::dataset::{self, SyntheticDataset};
use super::model::{calibrate_vae, write_pipeline};
use super::purity;
use super::summary::{self, DiffcResult, ExtractResult, SaeResult, Summary};
use super::{Plan, Size};
use crate::diffc::sweep::SweepRow;
use crate::features::extract::extract;
use crate::features::FeatureStore;
use crate::cli::sae::{AnalyzeArgs, EvalArgs, SaeCommand, TrainArgs};
use crate::tensor::Device;
use crate::{Context, Error, Result};
use clap::{Args, FromArgMatches};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `revelio demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// The demo folder. One left by an earlier demo is replaced; any other non-empty folder is
    /// refused.
    #[arg(long, default_value = "revelio-demo")]
    pub out: PathBuf,
    /// auto (the first GPU, else the CPU), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// small (under two minutes on 2 CPU cores) or tiny (seconds; what the tests run).
    #[arg(long, value_enum, default_value = "small")]
    pub size: Size,
    /// Seeds the images, the model's weights and every command.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Where a finished demo put things, and its summary.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    pub out: PathBuf,
    pub summary: Summary,
}

/// The file that marks a folder as a demo's (and so safe to replace).
pub const MARKER: &str = "demo.json";

/// The demo folder's sub-folders.
pub const DATA: &str = "data";
pub const MODEL: &str = "model";
pub const FEATURES: &str = "features";
pub const SAE: &str = "sae";
pub const REPORT: &str = "report";
pub const DIFFC: &str = "diffc";

/// A path as it goes on a printed command line (quoted when a shell would split it).
fn shell(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./,:=+@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// One revelio command: its words after `revelio`, for printing and for parsing.
struct Command {
    /// e.g. ["diffc", "sweep"].
    name: Vec<&'static str>,
    args: Vec<String>,
}

impl Command {
    fn new(name: &[&'static str], args: &[(&str, String)]) -> Command {
        let mut v = Vec::new();
        for (flag, value) in args {
            v.push(format!("--{flag}"));
            if !value.is_empty() {
                v.push(value.clone());
            }
        }
        Command { name: name.to_vec(), args: v }
    }

    fn line(&self) -> String {
        let words: Vec<String> = self.args.iter().map(|a| shell(a)).collect();
        format!("revelio {} {}", self.name.join(" "), words.join(" "))
    }

    /// The arguments as the command's own clap definition parses them.
    fn parse<T: Args + FromArgMatches>(&self) -> Result<T> {
        let cmd = T::augment_args(clap::Command::new("revelio").no_binary_name(true));
        let m = cmd.try_get_matches_from(&self.args).map_err(|e| Error::Internal(format!("{}: {e}", self.line())))?;
        T::from_arg_matches(&m).map_err(|e| Error::Internal(format!("{}: {e}", self.line())))
    }
}

/// Prints a step's header and, for a command, its line.
fn step(k: usize, n: usize, what: &str, cmd: Option<&Command>) {
    eprintln!();
    eprintln!("[{k}/{n}] {what}");
    if let Some(c) = cmd {
        eprintln!("  $ {}", c.line());
    }
}

/// Empties `out` if it holds an earlier demo; refuses a folder with anything else in it.
fn prepare(out: &Path, args: &DemoArgs) -> Result<()> {
    if out.exists() {
        let empty = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?.next().is_none();
        if !empty && !out.join(MARKER).is_file() {
            return Err(Error::BadOption(format!(
                "--out {}: the folder exists and was not made by `revelio demo`; give another --out or remove it",
                out.display()
            )));
        }
        if !empty {
            std::fs::remove_dir_all(out).map_err(|e| Error::io(out, e))?;
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let marker = serde_json::json!({
        "revelio": env!("CARGO_PKG_VERSION"),
        "size": args.size.name(),
        "seed": args.seed,
        "note": "made by `revelio demo`; a later demo with this --out replaces the whole folder",
    });
    crate::io::write_atomic(&out.join(MARKER), serde_json::to_string_pretty(&marker).expect("JSON").as_bytes())
}

/// The device the commands run on, resolved once (so `auto` reports its choice once), as
/// their `--device` value.
fn resolve_device(s: &str) -> Result<(Device, String)> {
    let d = crate::cli::args::device(s)?;
    let name = d.to_string();
    Ok((d, name))
}

fn csv(v: &[impl ToString]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
}

/// Runs the demo as `args` say; see the module docs. Prints progress and the summary.
pub fn run(args: &DemoArgs) -> Result<DemoOutcome> {
    let t0 = Instant::now();
    let plan: Plan = args.size.plan(args.seed);
    let out = args.out.clone();
    let (device, dev) = resolve_device(&args.device)?;
    prepare(&out, args)?;
    let steps = 6;
    let mut timings: Vec<(&'static str, f64)> = Vec::new();

    // 1. the images
    let t = Instant::now();
    let ds_spec = plan.dataset;
    step(1, steps, &format!(
        "images: {} shapes x {} colours x {} backgrounds, {} of each, {} px -> {}",
        dataset::SHAPES.len(),
        dataset::COLOURS.len(),
        dataset::BACKGROUNDS.len(),
        ds_spec.per_combination,
        ds_spec.size,
        p(&out.join(DATA))
    ), None);
    let ds: SyntheticDataset = dataset::write_dataset(&out.join(DATA), &ds_spec)?;
    timings.push(("images", t.elapsed().as_secs_f64()));

    // 2. the model
    let t = Instant::now();
    let model_dir = out.join(MODEL);
    step(2, steps, &format!("model: a Stable Diffusion pipeline folder with seeded random weights -> {}", p(&model_dir)), None);
    let mut words: Vec<&str> = vec!["a", "photo", "of"];
    words.extend(dataset::SHAPES);
    let pipeline = write_pipeline(&model_dir, &plan.model, ds_spec.size, &words)?;
    let scaling = calibrate_vae(&model_dir, &plan.model, &ds.manifest(), ds_spec.size, 32, &device).context("demo: calibrating the VAE's scaling factor")?;
    eprintln!(
        "  U-Net {}, VAE {}, CLIP text encoder {} parameters; VAE scaling_factor {scaling} (1 / std of the latents, as SD's 0.18215)",
        summary::count(pipeline.unet_params),
        summary::count(pipeline.vae_params),
        summary::count(pipeline.text_params)
    );
    timings.push(("model", t.elapsed().as_secs_f64()));

    // 3. extract: full maps (Diff-C's input; the SAE pools them per image, as Revelio does)
    let t = Instant::now();
    let features = out.join(FEATURES);
    let cmd = Command::new(
        &["extract"],
        &[
            ("model", p(&model_dir)),
            ("data", p(&ds.manifest())),
            ("out", p(&features)),
            ("layers", csv(&plan.layers)),
            ("timesteps", csv(&plan.timesteps)),
            ("resolution", ds_spec.size.to_string()),
            ("pooling", "none".into()),
            ("batch-size", plan.extract_batch.to_string()),
            ("seed", args.seed.to_string()),
            ("device", dev.clone()),
        ],
    );
    step(3, steps, "extract: the features of both layers at both timesteps", Some(&cmd));
    let ea: crate::cli::extract::ExtractArgs = cmd.parse()?;
    let es = extract(&ea.options()?, true)?;
    eprintln!(
        "  {} images in {:.1} s ({:.1} img/s, each at {} timesteps): VAE {:.1} s, U-Net {:.1} s",
        es.processed,
        es.elapsed.as_secs_f64(),
        es.images_per_second(),
        plan.timesteps.len(),
        es.vae.as_secs_f64(),
        es.model.as_secs_f64()
    );
    let extract_result = ExtractResult {
        images: es.processed,
        seconds: es.elapsed.as_secs_f64(),
        images_per_second: es.images_per_second(),
        store: p(&features),
        command: cmd.line(),
    };
    timings.push(("extract", t.elapsed().as_secs_f64()));

    // 4. the k-SAE on the first layer at the first timestep, one mean-pooled row per image (as
    // Revelio), evaluated on the test images
    let t = Instant::now();
    let (sae_layer, sae_t) = (plan.layers[0], plan.timesteps[0]);
    let sae_dir = out.join(SAE);
    let train = Command::new(
        &["sae", "train"],
        &[
            ("features", p(&features)),
            ("layer", sae_layer.into()),
            ("timestep", sae_t.to_string()),
            ("k", plan.sae_k.to_string()),
            ("expansion", plan.sae_expansion.to_string()),
            ("steps", plan.sae_steps.to_string()),
            ("batch", plan.sae_batch.to_string()),
            ("warmup", (plan.sae_steps / 10).to_string()),
            ("seed", args.seed.to_string()),
            ("device", dev.clone()),
            ("out", p(&sae_dir)),
        ],
    );
    let eval_json = sae_dir.join("eval.json");
    let eval = Command::new(&["sae", "eval"], &[("sae", p(&sae_dir)), ("json", p(&eval_json)), ("device", dev.clone())]);
    step(4, steps, &format!("sae train: a TopK SAE on {sae_layer} at t = {sae_t}, then its test-set figures"), Some(&train));
    crate::cli::sae::run(SaeCommand::Train(Box::new(train.parse::<TrainArgs>()?)))?;
    eprintln!("  $ {}", eval.line());
    crate::cli::sae::run(SaeCommand::Eval(Box::new(eval.parse::<EvalArgs>()?)))?;
    timings.push(("k-SAE", t.elapsed().as_secs_f64()));

    // 5. its analysis: top images, sigma_label, purity, grids, the HTML report
    let t = Instant::now();
    let report = out.join(REPORT);
    let analyze = Command::new(
        &["sae", "analyze"],
        &[("sae", p(&sae_dir)), ("top", plan.sae_top.to_string()), ("grids", plan.sae_grids.to_string()), ("thumb", "64".into()), ("device", dev.clone()), ("out", p(&report))],
    );
    step(5, steps, "sae analyze: each latent's top images, sigma_label, grids and the report", Some(&analyze));
    crate::cli::sae::run(SaeCommand::Analyze(Box::new(analyze.parse::<AnalyzeArgs>()?)))?;
    let store = FeatureStore::open(&features)?;
    let analysed = store.split_indices("train");
    let purity = purity::judge(&report.join("latents.json"), &store.manifest().images, &analysed, &ds, plan.sae_top)?;
    let sae = SaeResult::read(&eval_json, &report, sae_layer, sae_t, purity, vec![train.line(), eval.line(), analyze.line()])?;
    timings.push(("analysis", t.elapsed().as_secs_f64()));

    // 6. Diff-C: one classifier per (layer, timestep), the table and the plot
    let t = Instant::now();
    let diffc_dir = out.join(DIFFC);
    let widths = csv(&plan.diffc_widths);
    let cmd = Command::new(
        &["diffc", "sweep"],
        &[
            ("features", p(&features)),
            ("layers", csv(&plan.layers)),
            ("timesteps", csv(&plan.timesteps)),
            ("out", p(&diffc_dir)),
            ("epochs", plan.diffc_epochs.to_string()),
            ("dropout", "0".into()),
            ("widths", widths),
            ("seed", args.seed.to_string()),
            ("device", dev.clone()),
        ],
    );
    step(6, steps, "diffc sweep: a shape classifier on each (layer, timestep)", Some(&cmd));
    let sa: crate::cli::diffc::SweepArgs = cmd.parse()?;
    crate::cli::diffc::run_sweep(&sa)?;
    let sweep_json = diffc_dir.join("sweep.json");
    let text = std::fs::read_to_string(&sweep_json).map_err(|e| Error::io(&sweep_json, e))?;
    let rows: Vec<SweepRow> = serde_json::from_str(&text).map_err(|e| Error::format(&sweep_json, e.to_string()))?;
    let diffc = DiffcResult { rows, plot: p(&diffc_dir.join("sweep.png")), classes: dataset::SHAPES.len(), command: cmd.line() };
    timings.push(("Diff-C", t.elapsed().as_secs_f64()));

    let summary = Summary::new(args, &dev, &ds, &plan, pipeline, scaling, extract_result, sae, diffc, timings, t0.elapsed().as_secs_f64());
    summary.write(&out.join("summary.json"))?;
    println!("{}", summary.text(&out));
    Ok(DemoOutcome { out, summary })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quotes_only_what_needs_it() {
        assert_eq!(shell("revelio-demo/data/manifest.csv"), "revelio-demo/data/manifest.csv");
        assert_eq!(shell("mid,up.1"), "mid,up.1");
        assert_eq!(shell("my demo"), "'my demo'");
        assert_eq!(shell("it's"), "'it'\\''s'");
    }

    #[test]
    fn commands_print_and_parse_as_the_cli_does() {
        let c = Command::new(&["diffc", "sweep"], &[("features", "f".into()), ("layers", "mid,up.1".into()), ("timesteps", "25".into()), ("out", "o".into())]);
        assert_eq!(c.line(), "revelio diffc sweep --features f --layers mid,up.1 --timesteps 25 --out o");
        let a: crate::cli::diffc::SweepArgs = c.parse().unwrap();
        assert_eq!(a.layers, ["mid", "up.1"]);
        assert_eq!(a.opts.epochs, 30);
        let bad = Command::new(&["diffc", "sweep"], &[("nope", "1".into())]);
        assert!(bad.parse::<crate::cli::diffc::SweepArgs>().is_err());
    }
}
