//! Where on an image a latent fires: its activation at each spatial position of the image's
//! feature map, for the (image, latent) pairs a report shows. Needs a store that keeps
//! positions (`--pooling none`, `avg:HxW` or `tokens`); a mean-pooled store has none.
//!
//! For an SAE trained on mean-pooled rows (Revelio), position p's value is the SAE applied to
//! that position's vector; its pre-activations average over positions to the image's, so the
//! map shows where the image's activation comes from. With `RankBy::Dense` only the latents
//! asked for are computed (relu(xc_p . W_enc[:, j] + b_enc[j]) on the host, hw x d per pair,
//! not the full [hw, n] encoder); `RankBy::Code` needs each position's top-k, so the whole code.

use super::top::{position_activations, RankBy};
use super::Features;
use crate::features::Pooling;
use crate::sae::data::{self, RowKind};
use crate::sae::Sae;
use crate::Result;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// Activation maps [h, w] (row-major) by (latent, image).
#[derive(Debug, Clone, Default)]
pub struct Maps {
    pub hw: (usize, usize),
    pub maps: HashMap<(usize, usize), Vec<f32>>,
}

/// The host copies the dense path needs: W_enc^T [n, d], b_enc [n], b_dec [d].
struct DenseWeights {
    w_t: Vec<f32>,
    b_enc: Vec<f32>,
    b_dec: Vec<f32>,
}

impl DenseWeights {
    fn new(sae: &Sae) -> Result<DenseWeights> {
        let (d, n) = (sae.cfg.d_in, sae.cfg.d_sae);
        let w = sae.params.w_enc.to_f32_vec()?;
        let mut w_t = vec![0.0f32; n * d];
        for (k, row) in w.chunks(n).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                w_t[j * d + k] = v;
            }
        }
        Ok(DenseWeights { w_t, b_enc: sae.params.b_enc.to_f32_vec()?, b_dec: sae.params.b_dec.to_f32_vec()? })
    }

    /// relu(xc . W_enc[:, j] + b_enc[j]) for scaled rows xs [p, d].
    fn activation(&self, xs: &[f32], j: usize) -> f32 {
        let d = self.b_dec.len();
        let w = &self.w_t[j * d..(j + 1) * d];
        let dot: f32 = xs.iter().zip(&self.b_dec).zip(w).map(|((x, b), w)| (x - b) * w).sum();
        (dot + self.b_enc[j]).max(0.0)
    }
}

/// The maps of `wanted` (image -> latents), images read `chunk` at a time; None when the store
/// keeps no positions.
pub fn maps(sae: &Sae, src: Features, wanted: &BTreeMap<usize, Vec<usize>>, rank_by: RankBy, chunk: usize) -> Result<Option<Maps>> {
    let Some(&first) = wanted.keys().next() else { return Ok(None) };
    if src.store.manifest().pooling()? == Pooling::Mean {
        return Ok(None);
    }
    let probe = data::from_store(src.store, src.layer, src.timestep, &[first], RowKind::Position, &sae.device())?;
    let Some(hw) = probe.map_hw else { return Ok(None) };
    let p = hw.0 * hw.1;
    let (d, n) = (sae.cfg.d_in, sae.cfg.d_sae);
    let dense = match rank_by {
        RankBy::Dense => Some(DenseWeights::new(sae)?),
        RankBy::Code => None,
    };
    let images: Vec<usize> = wanted.keys().copied().collect();
    let mut out = Maps { hw, maps: HashMap::new() };
    for ids in images.chunks(chunk.max(1)) {
        let rows = data::from_store(src.store, src.layer, src.timestep, ids, RowKind::Position, &sae.device())?;
        let found: Vec<((usize, usize), Vec<f32>)> = match &dense {
            Some(w) => {
                // xs [ids * p, d]
                let xs = sae.scale_input(&rows.x)?.to_f32_vec()?;
                ids.par_iter()
                    .enumerate()
                    .flat_map_iter(|(i, &img)| {
                        let xs = &xs[i * p * d..(i + 1) * p * d];
                        wanted[&img].iter().map(move |&j| ((j, img), xs.chunks(d).map(|x| w.activation(x, j)).collect()))
                    })
                    .collect()
            }
            None => {
                // [ids * p, n]
                let act = position_activations(sae, &rows.x, rank_by)?;
                let act = &act;
                ids.iter()
                    .enumerate()
                    .flat_map(|(i, &img)| wanted[&img].iter().map(move |&j| ((j, img), (0..p).map(|q| act[(i * p + q) * n + j]).collect())))
                    .collect()
            }
        };
        out.maps.extend(found);
    }
    Ok(Some(out))
}

/// The largest side of a map as a report stores it.
pub const MAX_SIDE: usize = 16;

/// `map` [h, w] averaged over f x f blocks (f the smallest factor that brings both sides to at
/// most MAX_SIDE; edge blocks average the cells they have) -> (map, h', w').
pub fn shrink(map: &[f32], h: usize, w: usize) -> (Vec<f32>, usize, usize) {
    let f = h.max(w).div_ceil(MAX_SIDE).max(1);
    if f == 1 {
        return (map.to_vec(), h, w);
    }
    let (sh, sw) = (h.div_ceil(f), w.div_ceil(f));
    let mut out = Vec::with_capacity(sh * sw);
    for by in 0..sh {
        for bx in 0..sw {
            let (ys, xs) = (by * f..((by + 1) * f).min(h), bx * f..((bx + 1) * f).min(w));
            let cells = ys.len() * xs.len();
            let sum: f32 = ys.flat_map(|y| xs.clone().map(move |x| map[y * w + x])).sum();
            out.push(sum / cells as f32);
        }
    }
    (out, sh, sw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrink_averages_blocks() {
        let map: Vec<f32> = (0..32 * 32).map(|i| (i % 32) as f32).collect();
        let (s, h, w) = shrink(&map, 32, 32);
        assert_eq!((h, w), (16, 16));
        assert_eq!(s[0], 0.5);
        assert_eq!(s[15], 30.5);
        let (s, h, w) = shrink(&[1.0, 2.0, 3.0, 4.0], 2, 2);
        assert_eq!((s, h, w), (vec![1.0, 2.0, 3.0, 4.0], 2, 2));
        let (s, h, w) = shrink(&vec![1.0; 17 * 17], 17, 17);
        assert_eq!((h, w), (9, 9));
        assert!(s.iter().all(|&v| v == 1.0));
    }
}
