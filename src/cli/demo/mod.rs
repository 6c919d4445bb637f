//! `revelio demo`: the whole Revelio study, end to end, on a machine with nothing but revelio:
//! no GPU, no download. It draws a labelled image set with known factors ([`dataset`]), writes
//! a small Stable Diffusion pipeline with seeded random weights ([`model`]), then runs the real
//! commands on them, through the same argument parsing and library calls as the CLI
//! ([`run`]): `extract`, `sae train`, `sae analyze`, `diffc sweep`. It ends with a summary
//! ([`summary`]): throughput, the SAE's quality, how many SAE latents are pure for one known
//! factor (structure found where it exists), Diff-C's best accuracy, and the commands for the
//! same study on SD 1.5.

pub mod dataset;
pub mod model;
pub mod purity;
pub mod run;
pub mod summary;

pub use run::{run, DemoArgs, DemoOutcome};

use dataset::DatasetSpec;
use model::ModelSpec;

/// How big a demo run is: `small` (the default, under two minutes on 2 CPU cores) or `tiny`
/// (seconds: what the test suite runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Size {
    Small,
    Tiny,
}

/// Everything a size fixes.
#[derive(Debug, Clone)]
pub struct Plan {
    pub dataset: DatasetSpec,
    pub model: ModelSpec,
    /// The two layers and two timesteps extracted, the SAE's and Diff-C's.
    pub layers: [&'static str; 2],
    pub timesteps: [usize; 2],
    pub extract_batch: usize,
    /// k-SAE: latents per input channel, k, steps and batch.
    pub sae_expansion: usize,
    pub sae_k: usize,
    pub sae_steps: usize,
    pub sae_batch: usize,
    /// Top images per latent in the analysis (and the purity check), and grids drawn.
    pub sae_top: usize,
    pub sae_grids: usize,
    /// Diff-C: conv widths and epochs.
    pub diffc_widths: Vec<usize>,
    pub diffc_epochs: usize,
}

impl Size {
    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Tiny => "tiny",
        }
    }

    /// The plan of this size, every random draw derived from `seed`.
    pub fn plan(self, seed: u64) -> Plan {
        match self {
            Size::Small => Plan {
                dataset: DatasetSpec { per_combination: 40, test_per_combination: 10, size: 64, seed },
                model: ModelSpec {
                    unet_channels: [32, 64, 64, 64],
                    unet_layers_per_block: 1,
                    head_dim: 16,
                    groups: 8,
                    vae_channels: vec![32, 64],
                    vae_layers_per_block: 1,
                    text_width: 64,
                    text_layers: 2,
                    text_heads: 4,
                    seed,
                },
                layers: ["mid", "up.1"],
                timesteps: [25, 200],
                extract_batch: 30,
                sae_expansion: 4,
                sae_k: 8,
                sae_steps: 600,
                sae_batch: 256,
                sae_top: 10,
                sae_grids: 24,
                diffc_widths: vec![64, 64],
                diffc_epochs: 10,
            },
            Size::Tiny => Plan {
                dataset: DatasetSpec { per_combination: 4, test_per_combination: 1, size: 32, seed },
                model: ModelSpec {
                    unet_channels: [16, 32, 32, 32],
                    unet_layers_per_block: 1,
                    head_dim: 8,
                    groups: 4,
                    vae_channels: vec![16, 32],
                    vae_layers_per_block: 1,
                    text_width: 32,
                    text_layers: 1,
                    text_heads: 2,
                    seed,
                },
                layers: ["mid", "up.1"],
                timesteps: [25, 200],
                extract_batch: 18,
                sae_expansion: 4,
                sae_k: 4,
                sae_steps: 60,
                sae_batch: 54,
                sae_top: 10,
                sae_grids: 4,
                diffc_widths: vec![16, 16],
                diffc_epochs: 3,
            },
        }
    }
}
