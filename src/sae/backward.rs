//! The backward pass of one step, by hand: the loss gives dL/dx_hat = -c * (xs - x_hat) (and
//! AuxK its own scale on its residual); `ops::sparse_backward` turns that into the four
//! parameter gradients touching only the latents in the codes (see its doc for the formulas).
//!
//! Accumulation rule: every gradient is returned fresh (`=`); nothing is added into existing
//! buffers, so there is nothing to zero between steps. The top-k support is treated as fixed
//! (the selection has no gradient), as autograd through torch.topk does.

use super::loss::{AuxTerm, MainLoss};
use super::model::{Forward, Sae};
use super::ops::{self, AuxBackward, Grads, SparseBackward};
use crate::tensor::Tensor;
use crate::Result;

/// Gradients of main + aux for the forward pass `fwd`; `resid_sum` is the column sums of the
/// main residual.
pub fn backward(sae: &Sae, fwd: &Forward, main: &MainLoss, resid_sum: &Tensor, aux: Option<&AuxTerm>) -> Result<Grads> {
    let aux = aux.map(|a| AuxBackward { code: &a.code, dot: &a.decoded.dot, resid: &a.decoded.resid, resid_sum: &a.resid_sum, c: a.c });
    ops::sparse_backward(&SparseBackward {
        xc: &fwd.centered.xc,
        w_enc: &sae.params.w_enc,
        w_dec: &sae.params.w_dec,
        code: &fwd.code,
        dot: &fwd.decoded.dot,
        resid: &fwd.decoded.resid,
        resid_sum,
        c: main.c,
        relu: sae.cfg.relu,
        aux,
    })
}
