//! Features: datasets of real images, their decoding and preprocessing, the input pipeline,
//! extraction (`revelio extract`), generation (`revelio generate`: prompts, images, the
//! activations collected while sampling), and the store both write and the trainers read.

pub mod clip_prompts;
pub mod collect;
pub mod conditioning;
pub mod dataset;
pub mod extract;
pub mod generate;
pub mod hf_parquet;
pub mod image;
pub mod merge;
pub mod png;
pub mod prefetch;
pub mod prompts;
pub mod store;

pub use dataset::{Dataset, DatasetFormat, DatasetOptions};
pub use extract::{extract, ExtractOptions, ExtractSummary};
pub use image::{Preprocess, RgbImage};
pub use prefetch::{Batch, Prefetcher};
pub use store::{feature_key, FeatureStore, FeatureStoreWriter, ImageEntry, Manifest, Pooling};
