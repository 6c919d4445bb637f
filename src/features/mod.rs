//! Features: datasets of real images, their decoding and preprocessing, the input pipeline,
//! and the store that extraction writes and the trainers read.

pub mod dataset;
pub mod hf_parquet;
pub mod image;
pub mod prefetch;
pub mod store;

pub use dataset::{Dataset, DatasetFormat, DatasetOptions};
pub use image::{Preprocess, RgbImage};
pub use prefetch::{Batch, Prefetcher};
pub use store::{feature_key, FeatureStore, FeatureStoreWriter, ImageEntry, Manifest, Pooling};
