//! Features: datasets of real images, their decoding and preprocessing, the input pipeline,
//! extraction (`revelio extract`), and the store it writes and the trainers read.

pub mod backbone;
pub mod cli;
pub mod clip_prompts;
pub mod dataset;
pub mod extract;
pub mod hf_parquet;
pub mod image;
pub mod merge;
pub mod prefetch;
pub mod store;

pub use dataset::{Dataset, DatasetFormat, DatasetOptions};
pub use extract::{extract, ExtractOptions, ExtractSummary};
pub use image::{Preprocess, RgbImage};
pub use prefetch::{Batch, Prefetcher};
pub use store::{feature_key, FeatureStore, FeatureStoreWriter, ImageEntry, Manifest, Pooling};
