//! Each latent's nearest latents by decoder cosine: the rows of W_dec [n, d], normalised, are
//! multiplied with all rows a block at a time on the SAE's device (a [block, n] cosine matrix,
//! never the whole [n, n]), and the m + 1 largest of each row kept, the latent itself dropped.

use crate::ops::{matmul_t, topk};
use crate::sae::Sae;
use crate::tensor::Tensor;
use crate::Result;

/// Rows of the cosine matrix computed at once.
const BLOCK: usize = 1024;

/// For every latent, up to `m` (other latent, cosine), descending.
pub fn nearest(sae: &Sae, m: usize) -> Result<Vec<Vec<(usize, f32)>>> {
    let n = sae.cfg.d_sae;
    let d = sae.cfg.d_in;
    if m == 0 || n < 2 {
        return Ok(vec![Vec::new(); n]);
    }
    let mut w = sae.params.w_dec.to_f32_vec()?;
    for row in w.chunks_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
    let unit = Tensor::from_vec(w, [n, d], &sae.device())?;
    let keep = (m + 1).min(n);
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(BLOCK) {
        let rows = BLOCK.min(n - start);
        // [rows, n] = unit[start..] unit^T
        let cos = matmul_t(&unit.narrow0(start, rows)?, &unit, false, true)?;
        let (vals, idx) = topk(&cos, keep)?;
        let (vals, idx) = (vals.to_f32_vec()?, idx.to_vec::<i64>()?);
        for r in 0..rows {
            let row = (0..keep).map(|e| (idx[r * keep + e] as usize, vals[r * keep + e])).filter(|&(j, _)| j != start + r);
            out.push(row.take(m).collect());
        }
    }
    Ok(out)
}
