//! Features: the store that extraction writes and the trainers read.

pub mod store;

pub use store::{feature_key, FeatureStore, FeatureStoreWriter, ImageEntry, Manifest, Pooling};
