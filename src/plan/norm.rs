//! The normalisation plans: the checked geometry of GroupNorm, LayerNorm and BatchNorm calls,
//! BatchNorm's running statistics, the cache its forward saves and the gradients its backward
//! returns. Legend: N = batch, C = channels, S = product of the spatial dims, G = groups.

use crate::tensor::{DType, Device, Tensor};
use crate::Result;

/// The checked geometry of a GroupNorm call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupNormParams {
    pub n: usize,
    pub c: usize,
    /// Product of the spatial dims (1 for a rank-2 input).
    pub spatial: usize,
    pub groups: usize,
    pub eps: f32,
    /// Apply SiLU after the affine transform.
    pub silu: bool,
}

impl GroupNormParams {
    pub fn channels_per_group(&self) -> usize {
        self.c / self.groups
    }

    /// Elements in one group: C/G * S, contiguous in memory.
    pub fn group_len(&self) -> usize {
        self.channels_per_group() * self.spatial
    }
}

/// The checked geometry of a LayerNorm call: `rows` rows of `c` elements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerNormParams {
    pub rows: usize,
    pub c: usize,
    pub eps: f32,
}

/// The checked geometry of a BatchNorm call on x [N, C, *spatial].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormParams {
    pub n: usize,
    pub c: usize,
    /// Product of the spatial dims (1 for a rank-2 input).
    pub spatial: usize,
    pub eps: f32,
}

impl BatchNormParams {
    /// Elements per channel: N * S.
    pub fn per_channel(&self) -> usize {
        self.n * self.spatial
    }
}

/// A BatchNorm layer's running statistics, updated in place by `batch_norm_train`.
#[derive(Debug, Clone)]
pub struct BatchNormState {
    /// [C] f32
    pub running_mean: Tensor,
    /// [C] f32
    pub running_var: Tensor,
}

impl BatchNormState {
    /// Mean 0 and variance 1, as a fresh `torch.nn.BatchNorm2d`.
    pub fn new(channels: usize, device: &Device) -> Result<Self> {
        Ok(BatchNormState {
            running_mean: Tensor::zeros([channels], DType::F32, device)?,
            running_var: Tensor::full([channels], 1.0, DType::F32, device)?,
        })
    }
}

/// What the batch-norm forward saves for its backward.
#[derive(Debug, Clone)]
pub struct BatchNormCache {
    /// [C] f32: the batch mean.
    pub mean: Tensor,
    /// [C] f32: 1 / sqrt(biased batch variance + eps).
    pub rstd: Tensor,
}

/// Gradients of a batch-norm layer.
#[derive(Debug, Clone)]
pub struct BatchNormGrads {
    /// [N, C, *spatial], x's dtype
    pub dx: Tensor,
    /// [C], the weight's dtype; `Some` iff the layer has a weight.
    pub dweight: Option<Tensor>,
    /// [C], the weight's dtype; `Some` iff the layer has a weight.
    pub dbias: Option<Tensor>,
}
