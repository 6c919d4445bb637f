//! sigma_label exactly as Revelio's `safe_features` computes it, and purity measures that do
//! not depend on how the classes are numbered.
//!
//! Revelio (SD-kSAE/training/save_feature.py):
//!   mean_act = sum / (count + 1e-8);  sparsity = count / N;  num_activating = sparsity * N
//!   latents ranked by topk(mean_act * (num_activating > 10)) over all latents
//!   std_per_row = torch.std(labels of each latent's top-10 images as float)   (unbiased)
//!   average_stds[N'] = mean of std_per_row over the first N' ranked latents,
//!                      N' = 100, 200, ... < d_sae
//! The score is computed in f32 with the same operations (so a count of 10 that rounds above
//! 10 after the division and product counts as torch's would). Ties in the ranking (every
//! latent with score 0) are ordered by latent index here; torch.topk leaves their order
//! unspecified. sigma depends on the dataset's integer class ids: keep its ClassLabel order.

use serde::Serialize;

/// Revelio's ranking score per latent, in f32: mean_act * (num_activating > 10).
pub fn revelio_scores(count: &[u64], sum: &[f32], images: usize) -> Vec<f32> {
    let n_img = images as f32;
    count
        .iter()
        .zip(sum)
        .map(|(&c, &s)| {
            let c = c as f32;
            let mean_act = s / (c + 1e-8);
            let num_activating = (c / n_img) * n_img;
            if num_activating > 10.0 {
                mean_act
            } else {
                0.0
            }
        })
        .collect()
}

/// Latent ids by score, descending; equal scores by lower id.
pub fn ranking(scores: &[f32]) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..scores.len()).collect();
    ids.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    ids
}

/// torch.std of the labels as f32 (unbiased, n - 1): computed in f64, rounded to f32 as the
/// float tensor holds it. NaN for fewer than two labels (as torch).
pub fn label_std(labels: &[i64]) -> f32 {
    let n = labels.len();
    if n < 2 {
        return f32::NAN;
    }
    let v: Vec<f64> = labels.iter().map(|&l| l as f32 as f64).collect();
    let mean = v.iter().sum::<f64>() / n as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    var.sqrt() as f32
}

/// The most common label and how often it occurs (ties: the lower label); None when empty.
pub fn mode(labels: &[i64]) -> Option<(i64, usize)> {
    let mut sorted = labels.to_vec();
    sorted.sort_unstable();
    let mut best: Option<(i64, usize)> = None;
    for run in sorted.chunk_by(|a, b| a == b) {
        if best.is_none_or(|(_, n)| run.len() > n) {
            best = Some((run[0], run.len()));
        }
    }
    best
}

/// Fraction of the labels equal to the most common one.
pub fn majority_fraction(labels: &[i64]) -> f64 {
    mode(labels).map_or(f64::NAN, |(_, n)| n as f64 / labels.len() as f64)
}

/// Entropy of the label distribution in bits (0 for a single class; log2(10) for ten distinct).
pub fn label_entropy(labels: &[i64]) -> f64 {
    if labels.is_empty() {
        return f64::NAN;
    }
    let mut sorted = labels.to_vec();
    sorted.sort_unstable();
    let n = labels.len() as f64;
    let mut h = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let j = sorted[i..].iter().position(|&l| l != sorted[i]).map_or(sorted.len(), |p| i + p);
        let p = (j - i) as f64 / n;
        h -= p * p.log2();
        i = j;
    }
    h
}

/// Averages over the first N ranked latents, N = 100, 200, ... < d_sae.
#[derive(Debug, Clone, Serialize)]
pub struct TopNAverage {
    pub n: usize,
    /// Revelio's average_stds[N].
    pub sigma_label: f64,
    pub majority_fraction: f64,
    pub label_entropy_bits: f64,
}

/// Revelio's N list: 100, 200, ... below d_sae (empty when d_sae <= 100).
pub fn top_counts(d_sae: usize) -> Vec<usize> {
    (1..).map(|i| 100 * i).take_while(|&c| c < d_sae).collect()
}

/// The averages for each N of `counts` over latents in `ranked` order, from each latent's
/// top-10 labels. sigma is averaged as torch's mean (a NaN propagates).
pub fn averages(ranked: &[usize], top_labels: &[Vec<i64>], counts: &[usize]) -> Vec<TopNAverage> {
    let sig: Vec<f64> = ranked.iter().map(|&j| label_std(&top_labels[j]) as f64).collect();
    let maj: Vec<f64> = ranked.iter().map(|&j| majority_fraction(&top_labels[j])).collect();
    let ent: Vec<f64> = ranked.iter().map(|&j| label_entropy(&top_labels[j])).collect();
    let mean = |v: &[f64], n: usize| v[..n].iter().sum::<f64>() / n as f64;
    counts
        .iter()
        .filter(|&&n| n > 0 && n <= ranked.len())
        .map(|&n| TopNAverage { n, sigma_label: mean(&sig, n), majority_fraction: mean(&maj, n), label_entropy_bits: mean(&ent, n) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_is_unbiased_like_torch() {
        // torch.tensor([0., 0., 1., 1.]).std() = 0.57735
        assert!((label_std(&[0, 0, 1, 1]) - 0.577_350_3).abs() < 1e-6);
        assert_eq!(label_std(&[3; 10]), 0.0);
        assert!(label_std(&[1]).is_nan());
    }

    #[test]
    fn purity_measures() {
        assert_eq!(majority_fraction(&[2, 2, 2, 5]), 0.75);
        assert_eq!(mode(&[5, 2, 5, 2, 1]), Some((2, 2)));
        assert_eq!(mode(&[]), None);
        assert_eq!(label_entropy(&[4; 10]), 0.0);
        assert!((label_entropy(&[0, 1, 2, 3]) - 2.0).abs() < 1e-12);
        // Renumbering classes changes sigma but not purity.
        assert_eq!(label_entropy(&[0, 0, 9]), label_entropy(&[7, 7, 1]));
    }

    #[test]
    fn scores_need_more_than_ten_images() {
        let s = revelio_scores(&[11, 10, 0], &[22.0, 30.0, 0.0], 1000);
        assert_eq!(s, vec![2.0, 0.0, 0.0]);
        assert_eq!(ranking(&[0.0, 2.0, 0.0, 3.0]), vec![3, 1, 0, 2]);
        assert_eq!(top_counts(350), vec![100, 200, 300]);
        assert_eq!(top_counts(300), vec![100, 200]);
    }
}
