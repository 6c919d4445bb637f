//! The losses: reconstruction (normalized MSE as Revelio's, plain MSE, or MSE scaled by a fixed
//! variance as the concepts SAE's "scaled MSE") and AuxK (Gao et al.: the top aux-k dead
//! latents reconstruct the residual). Values are summed on the host in f64; what the backward
//! needs is the gradient scale c of each term: dL/dx_hat = -c * (x - x_hat).
//!
//! Legend: B = rows, d = input dim, sse = sum over rows and dims of (x - x_hat)^2,
//! D = sum over rows and dims of (x - batch mean of x)^2.

use super::model::{Forward, Sae};
use crate::ops;
use crate::ops::sae::{AuxBackward, Code, Decoded};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// The reconstruction term.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// sse / D: Revelio's `(mse / baseline_mse).nan_to_num(0)` (D = 0 gives 0).
    Nmse,
    /// sse / (B d).
    Mse,
    /// mse_scale * sse / (B d), mse_scale = 1 / (mean squared deviation of the first batch):
    /// the stable-concepts SAE's "scaled MSE" (its variance comes from the data once).
    ScaledMse,
}

impl LossKind {
    pub fn parse(s: &str) -> Result<LossKind> {
        match s {
            "nmse" => Ok(LossKind::Nmse),
            "mse" => Ok(LossKind::Mse),
            "scaled-mse" => Ok(LossKind::ScaledMse),
            _ => Err(Error::BadOption(format!("--loss {s}: expected nmse, mse or scaled-mse"))),
        }
    }
}

/// A host f64 sum of an f32 tensor, in element order.
pub fn host_sum(t: &Tensor) -> Result<f64> {
    Ok(t.to_f32_vec()?.iter().map(|&v| v as f64).sum())
}

/// The reconstruction term of one batch.
#[derive(Debug, Clone, Copy)]
pub struct MainLoss {
    pub loss: f64,
    pub sse: f64,
    /// D of the batch.
    pub var: f64,
    /// Gradient scale: dL/dx_hat = -c * resid.
    pub c: f32,
}

/// sse / denom and its gradient scale 2 * coef / denom; a zero denominator gives 0 and 0 (the
/// reference maps the NaN to 0, and no gradient flows from a constant).
fn ratio(sse: f64, denom: f64, coef: f64) -> (f64, f32) {
    if denom > 0.0 {
        (coef * sse / denom, (2.0 * coef / denom) as f32)
    } else {
        (0.0, 0.0)
    }
}

/// The reconstruction term for `fwd` on scaled inputs xs [B, d]; `x_m2` is the centred column
/// sums of squares of xs (`ops::sae::col_stats`), `mse_scale` the ScaledMse constant.
pub fn main_loss(kind: LossKind, fwd: &Forward, x_m2: &Tensor, mse_scale: f64) -> Result<MainLoss> {
    let (rows, d) = fwd.decoded.resid.dims2("main_loss")?;
    let sse = host_sum(&fwd.decoded.sse)?;
    let var = host_sum(x_m2)?;
    let n = (rows * d) as f64;
    let (loss, c) = match kind {
        LossKind::Nmse => ratio(sse, var, 1.0),
        LossKind::Mse => ratio(sse, n, 1.0),
        LossKind::ScaledMse => ratio(sse, n, mse_scale),
    };
    Ok(MainLoss { loss, sse, var, c })
}

/// AuxK's settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuxConfig {
    /// Dead latents that reconstruct the residual (0: no AuxK).
    pub k: usize,
    pub coef: f32,
    /// A latent is dead once it has not fired for more than this many samples.
    pub dead_after: u64,
}

/// AuxK's forward on one batch: its code over the dead latents, its decode of the main
/// residual, and what the backward needs.
#[derive(Debug, Clone)]
pub struct AuxTerm {
    pub code: Code,
    /// resid_aux = resid - r_hat, dots, squared error.
    pub decoded: Decoded,
    /// Column sums of resid_aux [d].
    pub resid_sum: Tensor,
    pub loss: f64,
    pub c: f32,
}

/// AuxK (openai/sparse_autoencoder's `auxk` loss): with r = xs - x_hat (no gradient), the top
/// aux-k of relu(pre) among `dead` latents give r_hat = z_aux W_dec, and
/// L_aux = coef * sum (r_hat - r)^2 / sum (r - batch mean of r)^2. `r_m2` is r's centred
/// column sums of squares. None when there is no dead latent or AuxK is off.
pub fn auxk(sae: &Sae, fwd: &Forward, dead: &[i32], cfg: &AuxConfig, r_m2: &Tensor) -> Result<Option<AuxTerm>> {
    if cfg.k == 0 || dead.is_empty() {
        return Ok(None);
    }
    let ka = cfg.k.min(dead.len());
    let p = &sae.params;
    let code = ops::sae::encode_topk_cols(&fwd.centered, &p.w_enc, sae.w_enc16.as_ref(), &p.b_enc, dead, ka)?;
    let decoded = ops::sae::decode(&fwd.decoded.resid, None, &code, &p.w_dec)?;
    let (resid_sum, _) = ops::sae::col_stats(&decoded.resid)?;
    let (loss, c) = ratio(host_sum(&decoded.sse)?, host_sum(r_m2)?, cfg.coef as f64);
    Ok(Some(AuxTerm { code, decoded, resid_sum, loss, c }))
}

impl AuxTerm {
    /// What the backward needs of this term.
    pub fn backward(&self) -> AuxBackward<'_> {
        AuxBackward { code: &self.code, dot: &self.decoded.dot, resid: &self.decoded.resid, resid_sum: &self.resid_sum, c: self.c }
    }
}
