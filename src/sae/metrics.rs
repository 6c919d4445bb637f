//! SAE metrics: FVU (fraction of variance unexplained = sum (x - x_hat)^2 over the sum of
//! squared deviations from the mean), L0 (nonzero code values per row), the fraction of dead
//! latents, and each latent's firing frequency with a log-scale histogram. `evaluate` runs them
//! over a set of rows (held-out images by default in `sae eval`).

use super::data::Rows;
use super::loss::host_sum;
use super::model::Sae;
use crate::ops;
use crate::ops::sae::Code;
use crate::Result;
use serde::Serialize;

/// Mean count of nonzero values per row of a code.
pub fn l0(code: &Code) -> Result<f64> {
    let rows = code.vals.dims()[0].max(1);
    let v = code.vals.to_f32_vec()?;
    Ok(v.iter().filter(|&&x| x != 0.0).count() as f64 / rows as f64)
}

/// Fraction of latents that have not fired for more than `dead_after` samples.
pub fn dead_fraction(since: &[i64], dead_after: u64) -> f64 {
    since.iter().filter(|&&s| s as u64 > dead_after).count() as f64 / since.len().max(1) as f64
}

/// Running (count, mean, m2) per column, merged batch by batch (Chan et al.), in f64.
struct ColMoments {
    n: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl ColMoments {
    fn add(&mut self, rows: usize, sum: &[f32], m2: &[f32]) {
        let nb = rows as f64;
        if nb == 0.0 {
            return;
        }
        let nn = self.n + nb;
        for i in 0..self.mean.len() {
            let mb = sum[i] as f64 / nb;
            let delta = mb - self.mean[i];
            self.mean[i] += delta * nb / nn;
            self.m2[i] += m2[i] as f64 + delta * delta * self.n * nb / nn;
        }
        self.n = nn;
    }
}

/// One bin of the frequency histogram: latents with log10(frequency) in [lo, hi); the bin
/// with `lo` = -inf holds the latents that never fired.
#[derive(Debug, Clone, Serialize)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
}

/// What `sae eval` reports.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub rows: usize,
    /// Mean over rows and dims of (xs - x_hat)^2 (in the scaled space when inputs are scaled).
    pub mse: f64,
    /// Revelio's loss: per batch sum (x - x_hat)^2 / sum (x - batch mean)^2, averaged over
    /// batches weighted by their rows.
    pub nmse: f64,
    /// Over the whole set: sum (x - x_hat)^2 / sum (x - set mean)^2.
    pub fvu: f64,
    pub explained_variance: f64,
    pub l0: f64,
    /// Latents that never fired on these rows.
    pub dead_fraction: f64,
    /// Per latent, the fraction of rows where it fired.
    #[serde(skip)]
    pub frequency: Vec<f64>,
    pub frequency_histogram: Vec<Bin>,
}

/// log10 frequency bins of width 1/2 from 1e-8 up to 1.
pub fn frequency_histogram(freq: &[f64]) -> Vec<Bin> {
    let mut bins = vec![Bin { lo: f64::NEG_INFINITY, hi: -8.0, count: 0 }];
    let mut lo = -8.0;
    while lo < 0.0 {
        bins.push(Bin { lo, hi: lo + 0.5, count: 0 });
        lo += 0.5;
    }
    bins.push(Bin { lo: 0.0, hi: f64::INFINITY, count: 0 });
    for &f in freq {
        let l = if f > 0.0 { f.log10() } else { f64::NEG_INFINITY };
        let b = bins.iter().rposition(|b| l >= b.lo).unwrap_or(0);
        bins[b].count += 1;
    }
    bins
}

/// Evaluates `sae` on `rows` in batches of `batch`.
pub fn evaluate(sae: &Sae, rows: &Rows, batch: usize) -> Result<EvalReport> {
    let (n, d) = (sae.cfg.d_sae, sae.cfg.d_in);
    let mut counts = vec![0u64; n];
    let (mut sse, mut nmse_w, mut nnz) = (0.0f64, 0.0f64, 0u64);
    let mut cols = ColMoments { n: 0.0, mean: vec![0.0; d], m2: vec![0.0; d] };
    let mut start = 0;
    while start < rows.len() {
        let len = batch.max(1).min(rows.len() - start);
        let xs = sae.scale_input(&rows.slice(start, len)?)?;
        let fwd = sae.forward(&xs)?;
        let (sum, m2) = ops::sae::col_stats(&xs)?;
        let b_sse = host_sum(&fwd.decoded.sse)?;
        let var = host_sum(&m2)?;
        sse += b_sse;
        if var > 0.0 {
            nmse_w += len as f64 * b_sse / var;
        }
        cols.add(len, &sum.to_f32_vec()?, &m2.to_f32_vec()?);
        let vals = fwd.code.vals.to_f32_vec()?;
        let idx = fwd.code.idx.to_vec::<i32>()?;
        for (v, j) in vals.iter().zip(&idx) {
            if *v != 0.0 {
                counts[*j as usize] += 1;
                nnz += 1;
            }
        }
        start += len;
    }
    let r = rows.len().max(1) as f64;
    let total_var: f64 = cols.m2.iter().sum();
    let fvu = if total_var > 0.0 { sse / total_var } else { 0.0 };
    let frequency: Vec<f64> = counts.iter().map(|&c| c as f64 / r).collect();
    Ok(EvalReport {
        rows: rows.len(),
        mse: sse / (r * d as f64),
        nmse: nmse_w / r,
        fvu,
        explained_variance: 1.0 - fvu,
        l0: nnz as f64 / r,
        dead_fraction: counts.iter().filter(|&&c| c == 0).count() as f64 / n.max(1) as f64,
        frequency_histogram: frequency_histogram(&frequency),
        frequency,
    })
}
