//! DiT's input embeddings: the patch embedding with its fixed 2D sin-cos position embedding
//! (diffusers `PatchEmbed`), and the conditioning: timestep frequencies + MLP plus the class
//! label table with its null class (diffusers `CombinedTimestepLabelEmbeddings`).
//!
//! Legend: B = batch, C = latent channels, H, W = latent size, p = patch size, h = H/p,
//! w = W/p, T = h*w tokens (row-major patch order: token y*w + x is patch (y, x)), D = width.
//! Upstream lines: diffusers v0.42.1, `src/diffusers/models/embeddings.py`
//! (https://github.com/huggingface/diffusers/blob/v0.42.1/src/diffusers/models/embeddings.py).

use crate::models::weights::Scope;
use crate::models::common::layers::Linear;
use crate::ops;
use crate::tensor::{DType, Device, Tensor};
use crate::{ensure_op, Result};

/// Channels of the timestep frequency embedding (`CombinedTimestepLabelEmbeddings`, L1335).
pub const TIMESTEP_CHANNELS: usize = 256;
/// diffusers' DiT uses `downscale_freq_shift=1` (L1335): frequencies exp(-ln(10000) i / 127).
/// facebookresearch/DiT divides by 128 instead (`TimestepEmbedder.timestep_embedding`); the
/// Hub's converted weights run with diffusers' value, and so do we (docs/dit.md).
const FREQ_SHIFT: f32 = 1.0;
const MAX_PERIOD: f64 = 10000.0;

/// t: [B] timesteps -> [B, 256] row-major: diffusers `get_timestep_embedding(t, 256,
/// flip_sin_to_cos=True, downscale_freq_shift=1)` (L27-80), in f32 in torch's order of
/// operations: f_i = exp(-ln(10000) * i / (128 - 1)), row = [cos(t f_i) for i < 128,
/// sin(t f_i) for i < 128] (the flip puts cos first, L73).
pub fn timestep_frequencies(t: &[f32]) -> Vec<f32> {
    let half = TIMESTEP_CHANNELS / 2;
    // torch multiplies by the Python float -math.log(10000), rounded to f32.
    let neg_log = -(MAX_PERIOD.ln() as f32);
    let freqs: Vec<f32> = (0..half).map(|i| (neg_log * i as f32 / (half as f32 - FREQ_SHIFT)).exp()).collect();
    let mut out = Vec::with_capacity(t.len() * TIMESTEP_CHANNELS);
    for &ti in t {
        out.extend(freqs.iter().map(|&f| (ti * f).cos()));
        out.extend(freqs.iter().map(|&f| (ti * f).sin()));
    }
    out
}

/// The 2D sin-cos position embedding of an h x w patch grid -> [h*w, dim] row-major, as
/// diffusers `get_2d_sincos_pos_embed(dim, (h, w), base_size, interpolation_scale)` (L147-219):
/// positions along an axis of n patches are i / (n / base_size) / interpolation_scale (f32),
/// so a grid of the trained size gets 0, 1, .., n-1 and a larger one is squeezed into the
/// same range. Token (y, x) gets [1d(x position), 1d(y position)] (the meshgrid puts w first,
/// L190), each 1d(pos) = [sin(pos w_k) for k < dim/4, cos(pos w_k) for k < dim/4] with
/// w_k = 10000^(-k / (dim/4)), computed in f64 (L222-259) and rounded to f32.
pub fn sincos_pos_embed(dim: usize, h: usize, w: usize, base_size: usize, interpolation_scale: f64) -> Vec<f32> {
    let axis = |n: usize| -> Vec<f64> {
        let step = (n as f64 / base_size as f64) as f32;
        (0..n).map(|i| (i as f32 / step / interpolation_scale as f32) as f64).collect()
    };
    let (ys, xs) = (axis(h), axis(w));
    let quarter = dim / 4;
    let omega: Vec<f64> = (0..quarter).map(|k| 1.0 / 10000f64.powf(k as f64 / (dim as f64 / 4.0))).collect();
    let mut out = Vec::with_capacity(h * w * dim);
    for &y in &ys {
        for &x in &xs {
            for pos in [x, y] {
                out.extend(omega.iter().map(|&o| (pos * o).sin() as f32));
                out.extend(omega.iter().map(|&o| (pos * o).cos() as f32));
            }
        }
    }
    out
}

/// diffusers `PatchEmbed` as DiT builds it (L263-388): a p x p stride-p convolution (one linear
/// map per patch) plus the fixed position embedding, no layer norm.
pub struct PatchEmbed {
    /// proj.weight [D, C, p, p] viewed as [D, C*p*p] (the convolution of one patch).
    proj_weight: Tensor,
    /// proj.bias [D]
    proj_bias: Tensor,
    patch: usize,
    in_channels: usize,
    dim: usize,
    /// sample_size / p: the trained grid side, which the positions of any grid are scaled to.
    base_size: usize,
    /// [1, base_size^2, D], model dtype: the position embedding of the trained grid (diffusers'
    /// non-persistent `pos_embed` buffer).
    pos_embed: Tensor,
}

/// diffusers' `DiTTransformer2DModel` builds `PatchEmbed` with the default interpolation
/// scale (`dit_transformer_2d.py:114-120`).
pub const INTERPOLATION_SCALE: f64 = 1.0;

impl PatchEmbed {
    pub fn load(s: &Scope, in_channels: usize, dim: usize, patch: usize, sample_size: usize, dtype: DType, device: &Device) -> Result<Self> {
        let proj = s.pp("proj");
        let weight = proj.get("weight", &[dim, in_channels, patch, patch])?;
        let proj_bias = proj.get("bias", &[dim])?;
        let base_size = sample_size / patch;
        let pos = sincos_pos_embed(dim, base_size, base_size, base_size, INTERPOLATION_SCALE);
        let pos_embed = ops::to_dtype(&Tensor::from_vec(pos, [1, base_size * base_size, dim], &Device::Cpu)?, dtype)?.to_device(device)?;
        Ok(PatchEmbed { proj_weight: weight.reshape([dim, in_channels * patch * patch])?, proj_bias, patch, in_channels, dim, base_size, pos_embed })
    }

    /// The trained grid's position embedding [1, T, D] (checked against an original
    /// checkpoint's buffer at load).
    pub fn trained_pos_embed(&self) -> &Tensor {
        &self.pos_embed
    }

    /// x: [B, C, H, W] (H, W multiples of p, checked by the model) -> tokens [B, h*w, D]
    ///
    /// The stride-p convolution is a linear map of each patch: x is rearranged to
    /// [B, h, w, C, p, p] (one permute), flattened to patch rows [B, T, C*p*p] in the
    /// conv weight's (c, i, j) order, and multiplied by the weight; that gives the tokens in
    /// row-major patch order directly (diffusers' `flatten(2).transpose(1, 2)`, L366).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, hh, ww) = x.dims4("dit.pos_embed")?;
        let p = self.patch;
        ensure_op!(c == self.in_channels && hh % p == 0 && ww % p == 0, "dit.pos_embed", "latents {} must be [B, {}, H, W] with H and W multiples of {p}", x.shape(), self.in_channels);
        let (h, w) = (hh / p, ww / p);
        // 1. Patches: [B, C, h, p, w, p] -> [B, h, w, C, p, p] -> [B, T, C*p*p].
        let patches = ops::layout::permute(&x.reshape([b, c, h, p, w, p])?, &[0, 2, 4, 1, 3, 5])?.reshape([b, h * w, c * p * p])?;
        // 2. The convolution as a linear map: [B, T, D].
        let tokens = ops::gemm::linear(&patches, &self.proj_weight, Some(&self.proj_bias))?;
        // 3. Position embedding; a grid of another size gets its own (L375-386).
        if (h, w) == (self.base_size, self.base_size) {
            ops::add(&tokens, &self.pos_embed)
        } else {
            let pos = sincos_pos_embed(self.dim, h, w, self.base_size, INTERPOLATION_SCALE);
            let pos = ops::to_dtype(&Tensor::from_vec(pos, [1, h * w, self.dim], &Device::Cpu)?, x.dtype())?.to_device(&x.device())?;
            ops::add(&tokens, &pos)
        }
    }
}

/// diffusers `TimestepEmbedding` (L1027): linear_1 (256 -> D), SiLU, linear_2 (D -> D).
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    pub fn load(s: &Scope, dim: usize) -> Result<Self> {
        Ok(TimestepEmbedding {
            linear_1: Linear::load(&s.pp("linear_1"), TIMESTEP_CHANNELS, dim, true)?,
            linear_2: Linear::load(&s.pp("linear_2"), dim, dim, true)?,
        })
    }

    /// t_freq: [B, 256] -> [B, D]
    pub fn forward(&self, t_freq: &Tensor) -> Result<Tensor> {
        self.linear_2.forward(&ops::silu(&self.linear_1.forward(t_freq)?)?)
    }
}

/// diffusers `CombinedTimestepLabelEmbeddings` (L1331-1346): the conditioning vector
/// timestep MLP(frequencies) + label table row. The table has `classes + 1` rows: the last is
/// the null class of classifier-free guidance (`LabelEmbedding`, L1230, built with dropout
/// 0.1 > 0). At inference labels are used as given (no label dropout).
pub struct CombinedTimestepLabelEmbeddings {
    timestep_embedder: TimestepEmbedding,
    /// class_embedder.embedding_table.weight [classes + 1, D]
    class_table: Tensor,
}

impl CombinedTimestepLabelEmbeddings {
    pub fn load(s: &Scope, dim: usize, classes: usize) -> Result<Self> {
        Ok(CombinedTimestepLabelEmbeddings {
            timestep_embedder: TimestepEmbedding::load(&s.pp("timestep_embedder"), dim)?,
            class_table: s.pp("class_embedder").pp("embedding_table").get("weight", &[classes + 1, dim])?,
        })
    }

    /// t_freq: [B, 256] (model dtype), labels: i64 [B] in 0..=classes -> [B, D]
    pub fn forward(&self, t_freq: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let t_emb = self.timestep_embedder.forward(t_freq)?;
        let y_emb = ops::layout::embedding(labels, &self.class_table)?;
        ops::add(&t_emb, &y_emb)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestep_frequencies_put_cos_first() {
        let e = timestep_frequencies(&[0.0, 3.0]);
        assert_eq!(e.len(), 512);
        assert!(e[..128].iter().all(|&v| v == 1.0) && e[128..256].iter().all(|&v| v == 0.0));
        // frequency 0 is 1, frequency 127 is 1e-4 (the shift makes the last exactly 1/10000).
        assert!((e[256] - 3f32.cos()).abs() < 1e-6 && (e[256 + 128] - 3f32.sin()).abs() < 1e-6);
        assert!((e[256 + 127] - (3e-4f32).cos()).abs() < 1e-6 && (e[511] - 3e-4).abs() < 1e-7);
    }

    #[test]
    fn pos_embed_of_the_trained_grid_uses_integer_positions() {
        let (dim, n) = (8, 3);
        let e = sincos_pos_embed(dim, n, n, n, 1.0);
        // token (y=2, x=1): [sin(1 w0), sin(1 w1), cos(1 w0), cos(1 w1), sin(2 w0), .., cos(2 w1)]
        let w = [1.0f64, 0.01];
        let t = &e[(2 * n + 1) * dim..(2 * n + 2) * dim];
        let want: Vec<f32> = [1.0f64, 2.0]
            .iter()
            .flat_map(|&p| w.iter().map(move |&o| (p * o).sin() as f32).chain(w.iter().map(move |&o| (p * o).cos() as f32)))
            .collect();
        assert_eq!(t, want.as_slice());
        // a 2x larger grid squeezes positions into the trained range: x = 2 -> position 1.
        let big = sincos_pos_embed(dim, 2 * n, 2 * n, n, 1.0);
        assert_eq!(&big[2 * dim..2 * dim + 4], &e[dim..dim + 4]);
    }
}
