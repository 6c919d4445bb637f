//! Activations collected while images are generated: the hook sink of `revelio generate`. Each
//! recorded value is pooled as it arrives (on the model's device, then to the host) and its
//! rows are kept for the current store shard only, so memory is bounded by one shard whatever
//! the number of prompts.
//!
//! In the feature store a (tap, branch, step) is the layer `<tap>@<branch>` at the timestep of
//! that sampling step (`mid_block.attentions.0:delta@cond` at t981 for step 0 of SD's 50 DDIM
//! steps); the manifest's settings list the steps and their timesteps, so readers can ask by
//! step (`sae train --step 24 --branch cond`).

use super::store::Pooling;
use crate::models::hooks::{Branch, Sink, Site, When};
use crate::models::taps::TapRequest;
use crate::tensor::{DType, Device, Tensor};
use crate::{ops, Error, Result};
use std::collections::BTreeMap;

/// What to collect.
#[derive(Debug, Clone, PartialEq)]
pub struct Collect {
    /// Tap names as the user wrote them (`mid_block.attentions.0:delta`).
    pub taps: Vec<String>,
    /// Sampling steps (0 = the first).
    pub steps: Vec<usize>,
    /// One or both branches.
    pub branches: Vec<Branch>,
    pub pooling: Pooling,
    /// Storage dtype.
    pub dtype: DType,
}

impl Collect {
    /// Where the record hooks act: the steps, and the branch when only one is collected.
    pub fn when(&self) -> When {
        When { steps: Some(self.steps.clone()), branch: if self.branches.len() == 1 { Some(self.branches[0]) } else { None }, samples: None }
    }
}

/// The store layer of a tap's branch.
pub fn layer_name(tap: &str, branch: Branch) -> String {
    format!("{tap}@{}", branch.name())
}

/// One (layer, timestep)'s rows of the current shard: [count, per-image...] f32.
struct Buffer {
    shape: Vec<usize>,
    data: Vec<f32>,
    filled: Vec<bool>,
}

/// The sink: pooled rows of the current shard by (layer, timestep).
pub struct Collector {
    pooling: Pooling,
    /// (step, timestep) of every collected step.
    steps: Vec<(usize, usize)>,
    branches: Vec<Branch>,
    start: usize,
    count: usize,
    buffers: BTreeMap<(String, usize), Buffer>,
}

impl Collector {
    /// `steps`: the collected (step, timestep) pairs.
    pub fn new(pooling: Pooling, steps: Vec<(usize, usize)>, branches: Vec<Branch>) -> Collector {
        Collector { pooling, steps, branches, start: 0, count: 0, buffers: BTreeMap::new() }
    }

    /// Starts the shard of samples `start..start + count` (what the last one held is dropped).
    pub fn begin_shard(&mut self, start: usize, count: usize) {
        self.start = start;
        self.count = count;
        self.buffers.clear();
    }

    /// The shard's features, [count, per-image...] in `dtype`, by (layer, timestep) for every
    /// tap of `taps`, branch and step; an error names any sample that missed one.
    pub fn finish_shard(&mut self, taps: &[String], dtype: DType) -> Result<Vec<((String, usize), Tensor)>> {
        let mut out = Vec::new();
        for tap in taps {
            for &b in &self.branches {
                for &(step, t) in &self.steps {
                    let key = (layer_name(tap, b), t);
                    let buf = self.buffers.remove(&key);
                    let missing = buf.as_ref().map_or(Some(0), |buf| buf.filled.iter().position(|f| !f));
                    if let Some(i) = missing {
                        return Err(Error::Internal(format!("sample {} has no {} at step {step}", self.start + i, key.0)));
                    }
                    let buf = buf.expect("checked above");
                    let dims: Vec<usize> = std::iter::once(self.count).chain(buf.shape).collect();
                    out.push((key, ops::to_dtype(&Tensor::from_vec(buf.data, dims, &Device::Cpu)?, dtype)?));
                }
            }
        }
        Ok(out)
    }
}

impl Sink for Collector {
    fn record(&mut self, site: &Site, tap: &TapRequest, value: &Tensor) -> Result<()> {
        let Some(&(_, t)) = self.steps.iter().find(|(s, _)| *s == site.call.step) else {
            return Ok(());
        };
        let (pooled, shape) = self.pooling.apply(value)?;
        let per: usize = shape.iter().product();
        for (r, row) in site.row_info().into_iter().enumerate() {
            let branch = row.branch.unwrap_or(Branch::Cond);
            if !self.branches.contains(&branch) {
                continue;
            }
            let i = row.sample.checked_sub(self.start).filter(|&i| i < self.count).ok_or_else(|| {
                Error::Internal(format!("{}: sample {} is outside the shard {}..{}", site.path, row.sample, self.start, self.start + self.count))
            })?;
            let count = self.count;
            let buf = self.buffers.entry((layer_name(&tap.name, branch), t)).or_insert_with(|| Buffer {
                shape: shape.clone(),
                data: vec![0.0; count * per],
                filled: vec![false; count],
            });
            if buf.shape != shape {
                return Err(Error::Internal(format!("{}: per-image shape {shape:?}, earlier rows had {:?}", tap.name, buf.shape)));
            }
            buf.data[i * per..(i + 1) * per].copy_from_slice(&pooled[r * per..(r + 1) * per]);
            buf.filled[i] = true;
        }
        Ok(())
    }
}
