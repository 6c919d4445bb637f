//! The `revelio` command line: parse, call the library, print. Each subcommand's work lives in
//! the library; this file only wires arguments to it and prints results and errors.

use clap::{Parser, Subcommand};
use revelio::cuda::{self, compile, nvrtc, Probe};
use revelio::models::clip::{ClipTokenizer, Flavor};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "revelio", version, about = "Look inside diffusion models: features, k-SAEs, Diff-C, on CUDA or the CPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version, how kernels are built, and the GPUs found (or why none).
    Info,
    /// Compile every CUDA kernel with NVRTC for each architecture and print the ptxas resource
    /// report; exits non-zero on a compile error, a register spill, a stack frame, or a kernel
    /// missing from the source or from the Rust kernel table. Needs no GPU.
    Kernels {
        /// Comma-separated architectures (default: sm_80,sm_90).
        #[arg(long, value_delimiter = ',', default_value = "sm_80,sm_90")]
        arch: Vec<String>,
    },
    /// Extract diffusion features of every image of a dataset into a feature store
    /// (resumable; --shard i/n for several GPUs or a Slurm array).
    Extract(Box<revelio::features::cli::ExtractArgs>),
    /// Text-to-image DDIM sampling with classifier-free guidance from a prompt or a prompt file:
    /// PNGs, an index and a contact sheet, and activations collected at chosen taps, steps and
    /// branches into a feature store (resumable; --shard i/n; --preset concepts).
    Generate(Box<revelio::features::cli::GenerateArgs>),
    /// Feature-store tools: `merge` joins the parts of a sharded extraction or generation.
    Features {
        #[command(subcommand)]
        command: revelio::features::cli::FeaturesCommand,
    },
    /// Tokenize prompts with a CLIP BPE tokenizer: one prompt per line on stdin, one JSON array
    /// of ids per line on stdout (start and end tokens, truncated and padded to --max-length).
    Tokenize {
        /// The tokenizer folder (vocab.json and merges.txt, or tokenizer.json alone as
        /// transformers 5 saves it; tokenizer_config.json), e.g. a pipeline's `tokenizer/`.
        #[arg(long)]
        tokenizer: PathBuf,
        /// Pad or truncate to this many ids (CLIP's context length).
        #[arg(long, default_value_t = 77)]
        max_length: usize,
        /// Which Hugging Face tokenizer to reproduce: `slow` (transformers 4.x CLIPTokenizer,
        /// what Revelio's reference used) or `fast` (transformers 5.x / CLIPTokenizerFast).
        #[arg(long, default_value = "slow")]
        flavor: String,
        /// Print the ids without start/end tokens, truncation or padding.
        #[arg(long)]
        no_pad: bool,
    },
    /// Run one model component (U-Net, VAE, CLIP text encoder, DiT) on inputs from a
    /// safetensors file; write its outputs and taps as f32 (for parity with diffusers).
    Forward(Box<revelio::models::forward::ForwardArgs>),
    /// Time a model component's forward pass on random inputs: images/s, FLOPs, peak memory.
    Bench(Box<revelio::models::bench::BenchArgs>),
    /// Diff-C: train, evaluate and sweep the light classifier on diffusion feature maps.
    Diffc(Box<revelio::diffc::cli::DiffcArgs>),
    /// k-sparse autoencoders on features: train, encode, eval, analyze.
    Sae {
        #[command(subcommand)]
        command: revelio::sae::cli::SaeCommand,
    },
    /// The whole study in minutes on any machine: draws a labelled image set, writes a small SD
    /// pipeline with random weights, runs extract, the k-SAE and a Diff-C sweep on them, and
    /// prints what they found and the commands for SD 1.5.
    Demo(revelio::demo::DemoArgs),
}

fn gib(bytes: usize) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

fn info() -> ExitCode {
    println!("revelio {}", env!("CARGO_PKG_VERSION"));
    match nvrtc::version() {
        Ok(((ma, mi), path)) => println!(
            "kernels: compiled at first use by NVRTC {ma}.{mi} ({}), cubins cached in {}",
            path.display(),
            compile::cache_dir().display()
        ),
        Err(e) => println!("kernels: unavailable ({e})"),
    }
    match cuda::cublas::location() {
        Ok(p) => println!("cuBLAS: {p}"),
        Err(e) => println!("cuBLAS: unavailable ({e})"),
    }
    match cuda::probe() {
        Probe::Devices(devs) => {
            let driver = cuda::driver_version().map(|(a, b)| format!("driver CUDA {a}.{b}")).unwrap_or_default();
            let list: Vec<String> = devs
                .iter()
                .map(|d| {
                    format!(
                        "cuda:{} {} ({:.1} GiB, {}, {} SMs)",
                        d.ordinal,
                        d.name,
                        gib(d.total_memory),
                        d.arch(),
                        d.multiprocessors
                    )
                })
                .collect();
            println!("devices: {} [{driver}]", list.join("; "));
            if let Some(Ok(sim)) = cuda::sim::simulator() {
                println!("!!! SIMULATED DEVICE ({}={}): every CUDA kernel runs as host code on the CPU.", cuda::sim::ENV, sim.dir.display());
                println!("!!! It checks results, not speed; timings on it mean nothing. Settings: {}.", sim.description);
            }
        }
        other => println!("devices: none: {}; --device auto runs on the CPU", other.reason()),
    }
    println!("nvtx: {}", if cuda::nvtx::enabled() { "on" } else { "off (libnvToolsExt not found)" });
    ExitCode::SUCCESS
}

fn kernels(archs: &[String]) -> ExitCode {
    if let Err(e) = nvrtc::version() {
        eprintln!("revelio kernels: {e}");
        eprintln!("hint: pip install --target DIR nvidia-cuda-nvrtc-cu12, then set REVELIO_PY_SITE=DIR");
        return ExitCode::FAILURE;
    }
    let reports = compile::check_all(archs);
    println!("{:<7} {:<16} {:<36} {:>5} {:>7} {:>6} {:>7}", "arch", "module", "kernel", "regs", "smem", "stack", "spills");
    let mut problems = Vec::new();
    let mut count = 0;
    for r in &reports {
        for k in &r.kernels {
            count += 1;
            println!(
                "{:<7} {:<16} {:<36} {:>5} {:>7} {:>6} {:>7}",
                r.arch,
                r.module.file_name(),
                k.name,
                k.registers,
                k.shared_bytes,
                k.stack_bytes,
                k.spill_stores + k.spill_loads
            );
        }
        problems.extend(r.problems.iter().map(|p| format!("{} {}: {p}", r.arch, r.module.file_name())));
    }
    println!("{count} kernels compiled for {}", archs.join(", "));
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        eprintln!("{} problem(s)", problems.len());
        ExitCode::FAILURE
    }
}

fn tokenize(dir: &std::path::Path, max_length: usize, flavor: &str, no_pad: bool) -> revelio::Result<()> {
    let flavor = match flavor {
        "slow" => Flavor::Slow,
        "fast" => Flavor::Fast,
        other => return Err(revelio::Error::BadOption(format!("--flavor {other}: expected slow or fast"))),
    };
    let tok = ClipTokenizer::from_dir_with_flavor(dir, flavor)?;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| revelio::Error::BadInput(format!("reading stdin: {e}")))?;
        let ids: Vec<i64> =
            if no_pad { tok.encode(&line).into_iter().map(i64::from).collect() } else { tok.encode_padded(&line, max_length)? };
        println!("{}", serde_json::to_string(&ids).expect("ids serialize"));
    }
    Ok(())
}

/// Prints an error with its chain of context and returns the failure exit code.
fn fail(e: revelio::Error) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => return info(),
        Command::Kernels { arch } => return kernels(&arch),
        Command::Tokenize { tokenizer, max_length, flavor, no_pad } => tokenize(&tokenizer, max_length, &flavor, no_pad),
        Command::Extract(args) => revelio::features::cli::run_extract(&args),
        Command::Generate(args) => revelio::features::cli::run_generate(&args),
        Command::Features { command } => revelio::features::cli::run_features(&command),
        Command::Forward(args) => revelio::models::forward::run(&args),
        Command::Bench(args) => revelio::models::bench::run(&args),
        Command::Diffc(args) => revelio::diffc::cli::run(&args),
        Command::Sae { command } => revelio::sae::cli::run(command),
        Command::Demo(args) => revelio::demo::run(&args).map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}
