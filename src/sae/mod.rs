//! k-sparse autoencoders (TopK SAEs) on diffusion features: Revelio's k-SAE and the
//! stable-concepts variant (ReLU before the top-k, AuxK, tied init, plain MSE) by flags.
//!
//! Legend: B = rows of a batch, d = d_in (feature channels), n = d_sae (latents), k = active
//! latents per row. Tensors as SAELens stores them: W_enc [d, n], b_enc [n], W_dec [n, d]
//! (rows are the latent directions), b_dec [d].
//!
//! - [`model`]: parameters, inits, and one step's forward (with the cache the backward needs),
//!   backward and Adam update side by side, written in the SAE op family `ops::sae` (fused
//!   encoder, sparse decode, sparse backward, Adam over the four tensors; run by `cpu::sae` or
//!   `cuda::sae`, kernels/sae.cu);
//! - [`loss`]: normalized MSE / MSE / scaled MSE, AuxK;
//! - [`data`]: rows from a feature store or a safetensors file; [`train`]: the loop, batching,
//!   schedule, checkpoints and exact resume; [`metrics`]: FVU, L0, dead fraction, frequencies;
//! - [`checkpoint`]: `sae_weights.safetensors` + `cfg.json` (SAELens' format plus provenance),
//!   training checkpoints and the JSONL log. The commands (`revelio sae ...`) are in src/cli/sae.rs.

pub mod checkpoint;
pub mod data;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod train;

pub use model::{Init, Sae, SaeConfig, SaeParams};
pub use crate::ops::sae::Code;
