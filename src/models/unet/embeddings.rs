//! The timestep embedding: diffusers' `Timesteps` (sinusoidal, no weights) and
//! `TimestepEmbedding` (linear_1 -> SiLU -> linear_2), as in diffusers 0.42
//! `models/embeddings.py` (`get_timestep_embedding`, `TimestepEmbedding`).
//!
//! The sinusoids are computed on the host in f32 as torch computes them (diffusers keeps them
//! f32 whatever the model dtype, then casts): exponent_i = f32(-ln 10000) * i / (half - shift)
//! with an f32 division, freq_i = exp(exponent_i), arg = t * freq_i in f32, then sin and cos.
//! exp, sin and cos are correctly rounded here (through f64); torch's vectorised versions are
//! within 1 ulp of that, so an entry may differ from torch's by 1 ulp of its argument (up to
//! ~6e-5 absolute at t ~ 1000: far below the 1e-4 relative parity bound of the whole model).

use crate::models::common::layers::Linear;
use crate::models::weights::Scope;
use crate::ops;
use crate::tensor::{DType, Device, Tensor};
use crate::Result;

/// `get_timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift)` for each timestep:
/// [len(t), dim] f32 values, row-major. The max period is 10000 and the scale 1 (all SD models).
pub fn timestep_embedding(timesteps: &[f32], dim: usize, flip_sin_to_cos: bool, freq_shift: f32) -> Vec<f32> {
    let half = dim / 2;
    let neg_log_period = -(10000f64.ln()) as f32;
    let denom = half as f32 - freq_shift;
    let freqs: Vec<f32> = (0..half).map(|i| ((neg_log_period * i as f32) / denom) as f64).map(|e| e.exp() as f32).collect();
    let mut out = vec![0f32; timesteps.len() * dim];
    for (row, &t) in out.chunks_mut(dim).zip(timesteps) {
        let (first, second) = row.split_at_mut(half);
        for (i, &f) in freqs.iter().enumerate() {
            let arg = (t * f) as f64;
            let (s, c) = (arg.sin() as f32, arg.cos() as f32);
            // torch.cat([sin, cos]), swapped to [cos, sin] when flip_sin_to_cos; an odd dim
            // leaves the last column 0 (diffusers pads it).
            if flip_sin_to_cos {
                first[i] = c;
                second[i] = s;
            } else {
                first[i] = s;
                second[i] = c;
            }
        }
    }
    out
}

/// `Timesteps` + `TimestepEmbedding`: timesteps -> [B, time_embed_dim].
pub struct TimestepEmbedding {
    /// Channels of the sinusoidal embedding (block_out_channels[0]).
    pub in_channels: usize,
    flip_sin_to_cos: bool,
    freq_shift: f32,
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    /// `s` is the `time_embedding` scope.
    pub fn load(s: &Scope, in_channels: usize, embed_dim: usize, flip_sin_to_cos: bool, freq_shift: f32) -> Result<Self> {
        Ok(TimestepEmbedding {
            in_channels,
            flip_sin_to_cos,
            freq_shift,
            linear_1: Linear::load(&s.pp("linear_1"), in_channels, embed_dim, true)?,
            linear_2: Linear::load(&s.pp("linear_2"), embed_dim, embed_dim, true)?,
        })
    }

    /// timesteps: one per sample (host values) -> [B, time_embed_dim] in `dtype` on `device`.
    pub fn forward(&self, timesteps: &[f32], dtype: DType, device: &Device) -> Result<Tensor> {
        let _r = crate::trace::range("time_embedding");
        let t_emb = timestep_embedding(timesteps, self.in_channels, self.flip_sin_to_cos, self.freq_shift);
        // diffusers casts the f32 sinusoids to the model dtype before the MLP.
        let t_emb = ops::to_dtype(&Tensor::from_vec(t_emb, [timesteps.len(), self.in_channels], device)?, dtype)?;
        let h = ops::silu(&self.linear_1.forward(&t_emb)?)?;
        self.linear_2.forward(&h)
    }
}
