//! The input pipeline: images read, decoded and preprocessed on a rayon pool while the caller
//! runs the model on earlier batches. Batches come back in the order asked for, each a
//! [B, 3, R, R] f32 tensor; an image that cannot be read or decoded leaves a row of zeros and a
//! [`Failure`] naming its path, and never stops the run.
//!
//! A producer thread builds batch k + 1.. (up to `depth` ahead) while the consumer holds batch
//! k; within a batch the images are decoded in parallel on the pool.

use super::dataset::Dataset;
use super::image::Preprocess;
use crate::features::store::Failure;
use crate::tensor::{Device, Tensor};
use crate::{Error, Result};
use rayon::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One batch of preprocessed images.
pub struct Batch {
    /// Dataset indices of the rows, in order.
    pub indices: Vec<usize>,
    /// [B, 3, R, R] f32 on the CPU, in [-1, 1]; zeros for failed images.
    pub images: Tensor,
    /// Images that could not be read or decoded (their rows are zeros).
    pub failures: Vec<Failure>,
    /// Wall time the pipeline spent reading and decoding this batch.
    pub decode_time: Duration,
}

/// Batches of a dataset, prepared ahead on a thread pool (see the module docs).
pub struct Prefetcher {
    rx: Option<Receiver<Result<Batch>>>,
    worker: Option<JoinHandle<()>>,
    waited: Duration,
}

/// Reads, decodes and preprocesses the images `indices` of `dataset` into one batch.
pub fn load_batch(dataset: &Dataset, indices: &[usize], preprocess: &Preprocess) -> Result<Batch> {
    let t0 = Instant::now();
    let r = preprocess.resolution();
    let per_image = 3 * r * r;
    let bytes = dataset.read_many(indices);
    let results: Vec<std::result::Result<Vec<f32>, String>> = bytes
        .into_par_iter()
        .zip(indices.par_iter())
        .map(|(b, &i)| {
            let b = b.map_err(|e| e.to_string())?;
            let img = super::image::RgbImage::decode(&b).map_err(|e| e.to_string())?;
            preprocess.apply(&img, i).map_err(|e| e.to_string())
        })
        .collect();
    let mut data = vec![0.0f32; indices.len() * per_image];
    let mut failures = Vec::new();
    for (k, (res, &i)) in results.into_iter().zip(indices).enumerate() {
        match res {
            Ok(v) => data[k * per_image..(k + 1) * per_image].copy_from_slice(&v),
            Err(error) => failures.push(Failure { index: i, path: dataset.entries()[i].path.clone(), error }),
        }
    }
    let images = Tensor::from_vec(data, [indices.len(), 3, r, r], &Device::Cpu)?;
    Ok(Batch { indices: indices.to_vec(), images, failures, decode_time: t0.elapsed() })
}

impl Prefetcher {
    /// Starts preparing `batches` (lists of dataset indices) of `dataset`, at most `depth`
    /// batches ahead of the consumer, on a pool of `threads` threads (all cores when `None`).
    pub fn new(
        dataset: Arc<Dataset>,
        batches: Vec<Vec<usize>>,
        preprocess: Preprocess,
        depth: usize,
        threads: Option<usize>,
    ) -> Result<Prefetcher> {
        if let Some(&bad) = batches.iter().flatten().find(|&&i| i >= dataset.len()) {
            return Err(Error::Internal(format!("prefetch: image index {bad} is past the dataset's {} images", dataset.len())));
        }
        let mut builder = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("revelio-decode-{i}"));
        if let Some(n) = threads {
            builder = builder.num_threads(n.max(1));
        }
        let pool = builder.build().map_err(|e| Error::Internal(format!("prefetch: cannot start the decode pool: {e}")))?;
        let (tx, rx) = sync_channel(depth.max(1));
        let worker = std::thread::Builder::new()
            .name("revelio-prefetch".into())
            .spawn(move || {
                for indices in batches {
                    let batch = pool.install(|| load_batch(&dataset, &indices, &preprocess));
                    // The consumer hung up: stop early.
                    if tx.send(batch).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("prefetch: cannot start its thread: {e}")))?;
        Ok(Prefetcher { rx: Some(rx), worker: Some(worker), waited: Duration::ZERO })
    }

    /// Consecutive batches of `batch_size` over `range` of the dataset.
    pub fn sequential(
        dataset: Arc<Dataset>,
        range: std::ops::Range<usize>,
        batch_size: usize,
        preprocess: Preprocess,
        depth: usize,
        threads: Option<usize>,
    ) -> Result<Prefetcher> {
        if batch_size == 0 {
            return Err(Error::BadOption("--batch-size must be at least 1".into()));
        }
        let idx: Vec<usize> = range.collect();
        let batches = idx.chunks(batch_size).map(|c| c.to_vec()).collect();
        Prefetcher::new(dataset, batches, preprocess, depth, threads)
    }

    /// Time the consumer spent waiting for batches (the pipeline not keeping up).
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl Iterator for Prefetcher {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        let t0 = Instant::now();
        let out = self.rx.as_ref()?.recv().ok();
        self.waited += t0.elapsed();
        out
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Hanging up first lets a producer blocked on a full channel finish.
        drop(self.rx.take());
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
