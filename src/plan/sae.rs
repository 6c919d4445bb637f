//! The k-SAE plans: a sparse code, the centred input, what a sparse decode returns, the inputs of
//! the sparse backward and its gradients, and one tensor's slot of the fused Adam step. Both
//! backends take and return these; `ops::sae` builds and checks them.
//!
//! Legend: B = rows, d = input dim, n = latents, k / kk = entries per row of a code.
//! Parameters are f32; codes are (vals f32 [B, kk] descending per row, idx i32 [B, kk]).

use crate::tensor::Tensor;

/// A sparse code: per row the kk selected latents.
#[derive(Debug, Clone)]
pub struct Code {
    /// f32 [B, kk], descending within each row (value, then lower latent first).
    pub vals: Tensor,
    /// i32 [B, kk].
    pub idx: Tensor,
}

/// The centred input x - b_dec: f32 [B, d], and on CUDA its bf16 copy (the encoder's operand).
#[derive(Debug, Clone)]
pub struct Centered {
    pub xc: Tensor,
    pub xc16: Option<Tensor>,
}

/// What a sparse decode returns: target - recon [B, d] f32, the dot of that residual with each
/// code entry's decoder row [B, kk], and each row's squared residual [B].
#[derive(Debug, Clone)]
pub struct Decoded {
    pub resid: Tensor,
    pub dot: Tensor,
    pub sse: Tensor,
}

/// Gradients of the four parameters, shaped like them.
#[derive(Debug, Clone)]
pub struct Grads {
    /// [d, n]
    pub w_enc: Tensor,
    /// [n]
    pub b_enc: Tensor,
    /// [n, d]
    pub w_dec: Tensor,
    /// [d]
    pub b_dec: Tensor,
}

/// AuxK's part of the backward: its code over dead latents, the dots and residual of its
/// decode against the main residual, the residual's column sums, and its gradient scale.
pub struct AuxBackward<'a> {
    pub code: &'a Code,
    /// f32 [B, ka]
    pub dot: &'a Tensor,
    /// f32 [B, d]
    pub resid: &'a Tensor,
    /// f32 [d]
    pub resid_sum: &'a Tensor,
    pub c: f32,
}

/// Inputs of the sparse backward. With g = dL/dx_hat = -c * resid (c = the loss's gradient
/// scale), each code entry (b, j, z) gives
///   dpre = -c * (resid[b] . W_dec[j]) * (ReLU'(pre) if relu, else 1)
///   dW_dec[j] += -c * z * resid[b],  dW_enc[:, j] += dpre * xc[b],  db_enc[j] += dpre
/// and db_dec = -c * sum_b resid[b] - W_enc db_enc (the decoder bias and the centring); then
/// dW_dec[j] loses its component along W_dec[j]. AuxK entries add the same terms with their
/// own residual and scale (and the decoder-bias term, as openai/sparse_autoencoder does).
pub struct SparseBackward<'a> {
    /// f32 [B, d], the centred input of the forward pass.
    pub xc: &'a Tensor,
    /// f32 [d, n]
    pub w_enc: &'a Tensor,
    /// f32 [n, d]
    pub w_dec: &'a Tensor,
    pub code: &'a Code,
    /// f32 [B, k], from the main decode.
    pub dot: &'a Tensor,
    /// f32 [B, d], x - x_hat.
    pub resid: &'a Tensor,
    /// f32 [d], its column sums.
    pub resid_sum: &'a Tensor,
    pub c: f32,
    pub relu: bool,
    pub aux: Option<AuxBackward<'a>>,
}

/// One tensor's parameter (f32), gradient (f32) and Adam moments (f32 or bf16, one dtype for
/// all four tensors), updated in place by the fused Adam step.
pub struct AdamSlot<'a> {
    pub p: &'a mut Tensor,
    pub g: &'a Tensor,
    pub m: &'a mut Tensor,
    pub v: &'a mut Tensor,
}

/// The four slots of one step, in the order the kernel updates them.
pub struct AdamSlots<'a> {
    /// [d, n]
    pub w_enc: AdamSlot<'a>,
    /// [n]
    pub b_enc: AdamSlot<'a>,
    /// [d]
    pub b_dec: AdamSlot<'a>,
    /// [n, d]; its rows are renormalised after the update.
    pub w_dec: AdamSlot<'a>,
}
