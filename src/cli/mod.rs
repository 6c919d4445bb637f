//! The `revelio` command line, the only place clap is used: each command's arguments, the
//! library options they ask for, and what it prints. The work itself is in the library.
//!
//! - [`args`]: what the commands parse alike (`--device`, dtypes, `--shard i/n`).
//! - [`extract`], [`generate`], [`features`]: feature extraction, generation, store tools.
//! - [`sae`], [`diffc`]: the k-SAE and Diff-C commands.
//! - [`forward`], [`bench`], [`tokenize`], [`info`]: one component on given inputs, its
//!   throughput, CLIP token ids, the build and the devices (`info`, `kernels`).
//! - [`demo`]: the whole study on drawn images and a random-weight model, through the other
//!   commands' own argument parsing.

pub mod args;
pub mod bench;
pub mod demo;
pub mod diffc;
pub mod extract;
pub mod features;
pub mod forward;
pub mod generate;
pub mod info;
pub mod sae;
pub mod tokenize;

use clap::{Parser, Subcommand};
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
    Extract(Box<extract::ExtractArgs>),
    /// Text-to-image DDIM sampling with classifier-free guidance from a prompt or a prompt file:
    /// PNGs, an index and a contact sheet, and activations collected at chosen taps, steps and
    /// branches into a feature store (resumable; --shard i/n; --preset concepts).
    Generate(Box<generate::GenerateArgs>),
    /// Feature-store tools: `merge` joins the parts of a sharded extraction or generation.
    Features {
        #[command(subcommand)]
        command: features::FeaturesCommand,
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
    Forward(Box<forward::ForwardArgs>),
    /// Time a model component's forward pass on random inputs: images/s, FLOPs, peak memory.
    Bench(Box<bench::BenchArgs>),
    /// Diff-C: train, evaluate and sweep the light classifier on diffusion feature maps.
    Diffc(Box<diffc::DiffcArgs>),
    /// k-sparse autoencoders on features: train, encode, eval, analyze.
    Sae {
        #[command(subcommand)]
        command: sae::SaeCommand,
    },
    /// The whole study in minutes on any machine: draws a labelled image set, writes a small SD
    /// pipeline with random weights, runs extract, the k-SAE and a Diff-C sweep on them, and
    /// prints what they found and the commands for SD 1.5.
    Demo(demo::DemoArgs),
}

/// Prints an error with its chain of context and returns the failure exit code.
fn fail(e: crate::Error) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// Parses the command line and runs the command: the whole of the `revelio` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => return info::info(),
        Command::Kernels { arch } => return info::kernels(&arch),
        Command::Tokenize { tokenizer, max_length, flavor, no_pad } => tokenize::tokenize(&tokenizer, max_length, &flavor, no_pad),
        Command::Extract(args) => extract::run_extract(&args),
        Command::Generate(args) => generate::run_generate(&args),
        Command::Features { command } => features::run_features(&command),
        Command::Forward(args) => forward::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Diffc(args) => diffc::run(&args),
        Command::Sae { command } => sae::run(command),
        Command::Demo(args) => demo::run(&args).map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}
