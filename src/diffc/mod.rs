//! Diff-C: how much semantics a diffusion layer and timestep carry, measured as the top-1
//! accuracy of a small conv classifier trained on its feature maps (Revelio's
//! `diffc_image_classification`, spec section 3; docs/diffc.md).
//!
//! - [`model`]: the classifier (DiffusionFeatureClassifier_V4), forward and backward by hand,
//!   PyTorch's inits and parameter names.
//! - [`data`]: where features come from: the `FeatureSource` trait, the cached sources (a feature
//!   store, a safetensors file).
//! - [`online`]: the reference's protocol: features computed every epoch from the images
//!   (augmentation, VAE, fresh noise, the U-Net up to the layer).
//! - [`train`]: AdamW, the cosine schedule per epoch, seeded shuffling, checkpoints and resume,
//!   metrics.
//! - [`eval`]: top-1, per-class accuracy, confusion matrix.
//! - [`sweep`]: one classifier per (layer, timestep), a table and the accuracy-over-timesteps plot.
//! The commands (`revelio diffc train|eval|sweep`) are in src/cli/diffc.rs.

pub mod data;
pub mod eval;
pub mod model;
pub mod online;
pub mod sweep;
pub mod train;

pub use data::{FeatureSource, FileSource, Split, StoreSource};
pub use eval::{evaluate, EvalReport};
pub use online::{OnlineOptions, OnlineSource, TestNoise};
pub use model::{DiffcClassifier, DiffcConfig, ForwardCache, Grads};
pub use train::{cosine_lr, train, ModelOptions, TrainConfig, TrainSummary};
