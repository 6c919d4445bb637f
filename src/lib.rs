//! revelio: a from-scratch GPU compute engine for looking inside diffusion models. The modules
//! form layers (docs/architecture.md, checked by tests/architecture.rs).
//!
//! - [`tensor`]: shape, dtype, device, storage; explicit copies between devices.
//! - [`ops`]: every op the models and trainers use (the k-SAE's included), checked once and
//!   dispatched to [`cpu`] (the f32 reference) or [`cuda`] (hand-written kernels, cuBLAS for
//!   plain GEMMs), which trust the [`plan`] the op builds; [`trace`]: profiling ranges;
//!   [`profile`]: the per-op and per-module profile of `revelio bench --profile`.
//! - [`io`]: safetensors loading (memory-mapped) and saving, config.json parsing, atomic writes.
//! - [`models`]: the U-Net, VAE, CLIP text encoder, DiT and DDIM, built from ops.
//! - [`rng`]: counter-based random numbers, identical on every device.
//! - [`diffc`]: the Diff-C classifier, its training, evaluation and sweeps.
//! - [`sae`]: TopK sparse autoencoders on diffusion features: training (in `ops::sae`: a fused
//!   CUDA step and its CPU reference), encoding, evaluation.
//! - [`analysis`]: top images, sigma_label, grids, reports, figures (line plots, heat maps).
//! - [`cli`]: the commands (clap arguments, printing; the only module that uses clap), `revelio
//!   demo` among them: the whole study on drawn images and a random-weight model.

pub mod analysis;
pub mod bench;
pub mod cli;
pub mod cpu;
pub mod cuda;
pub mod diffc;
mod error;
pub mod features;
pub mod io;
pub mod models;
pub mod ops;
pub mod plan;
pub mod profile;
pub mod progress;
pub mod rng;
pub mod sae;
pub mod tensor;
pub mod trace;

pub use error::{Context, Error, Result};
pub use tensor::{DType, Device, Shape, Tensor};
