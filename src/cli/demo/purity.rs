//! The demo's check that the pipeline finds structure where it exists: the images' factors
//! (shape, colour, background) are known, so an SAE latent whose top images all share one
//! factor's value is a latent that picked out that factor. The count is set against chance: the
//! number a latent with the same number of top images drawn at random would reach.

use super::dataset::{SyntheticDataset, FACTORS};
use crate::features::store::ImageEntry;
use crate::{Error, Result};
use serde::Serialize;
use std::path::Path;

/// What the check found over the latents `sae analyze` listed.
#[derive(Debug, Clone, Serialize)]
pub struct Purity {
    /// Top images a latent must have (it fired on at least this many) to be judged.
    pub top: usize,
    /// Latents judged.
    pub latents: usize,
    /// Per factor (shape, colour, background): latents whose top images share its value.
    pub pure: [usize; 3],
    /// Latents pure for at least one factor.
    pub pure_any: usize,
    /// Per factor: the expected count if each judged latent's top images were a random draw
    /// (without replacement) from the analysed images.
    pub chance: [f64; 3],
}

/// `n` choose `k` as a float (0 when k > n).
fn choose(n: usize, k: usize) -> f64 {
    if k > n {
        return 0.0;
    }
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// Probability that `top` images drawn without replacement from images whose values of one
/// factor occur `counts` times all share a value.
pub fn chance_all_same(counts: &[usize], top: usize) -> f64 {
    let n: usize = counts.iter().sum();
    let all = choose(n, top);
    if all == 0.0 {
        return 0.0;
    }
    counts.iter().map(|&c| choose(c, top)).sum::<f64>() / all
}

/// Judges the latents of an analysis: `latents_json` is the report's `latents.json`, `images`
/// the store's image entries (the top images' indices point into them), `analysed` the indices
/// of the images the analysis ranked (for the chance figure).
pub fn judge(latents_json: &Path, images: &[ImageEntry], analysed: &[usize], ds: &SyntheticDataset, top: usize) -> Result<Purity> {
    let text = std::fs::read_to_string(latents_json).map_err(|e| Error::io(latents_json, e))?;
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).map_err(|e| Error::format(latents_json, e.to_string()))?;
    let factors_of = |img: usize| -> Result<[usize; 3]> {
        let entry = images.get(img).ok_or_else(|| Error::format(latents_json, format!("top image {img} is not in the store ({} images)", images.len())))?;
        ds.by_entry(entry)
            .map(|s| s.factors)
            .ok_or_else(|| Error::format(latents_json, format!("store image {} is not one of the demo's images", entry.path)))
    };
    let mut p = Purity { top, latents: 0, pure: [0; 3], pure_any: 0, chance: [0.0; 3] };
    for row in &rows {
        let tops: Vec<usize> = row["top"].as_array().into_iter().flatten().filter_map(|t| t["image"].as_u64()).map(|i| i as usize).collect();
        let count = row["count"].as_u64().unwrap_or(0) as usize;
        if count < top || tops.len() < top {
            continue;
        }
        let fs = tops[..top].iter().map(|&i| factors_of(i)).collect::<Result<Vec<_>>>()?;
        p.latents += 1;
        let mut any = false;
        for f in 0..FACTORS.len() {
            if fs.iter().all(|x| x[f] == fs[0][f]) {
                p.pure[f] += 1;
                any = true;
            }
        }
        p.pure_any += usize::from(any);
    }
    for (f, chance) in p.chance.iter_mut().enumerate() {
        let mut counts = vec![0usize; SyntheticDataset::factor_values(f).len()];
        for &i in analysed {
            counts[factors_of(i)?[f]] += 1;
        }
        *chance = p.latents as f64 * chance_all_same(&counts, top);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chance_of_a_shared_value() {
        // two values, 2 and 2: two draws share a value with probability 2 * C(2,2) / C(4,2) = 1/3
        assert!((chance_all_same(&[2, 2], 2) - 1.0 / 3.0).abs() < 1e-12);
        // a single value: always
        assert!((chance_all_same(&[5], 3) - 1.0).abs() < 1e-12);
        // three equal values, ten draws from 180: about 3 * (1/3)^10
        let p = chance_all_same(&[60, 60, 60], 10);
        assert!(p > 1e-5 && p < 5.1e-5, "{p}");
        assert_eq!(chance_all_same(&[3, 3], 10), 0.0);
    }
}
