//! The attention plan: the sizes of one `ops::attention` call and the head-dim limit the
//! kernels take. Legend: B = batch, Nq / Nk = query / key tokens, H = heads, D = head dim.

/// The largest head dim the kernels take (the VAE's single head).
pub const MAX_HEAD_DIM: usize = 512;

/// Sizes of one attention call, checked by `attention`; the backends trust them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionParams {
    pub batch: usize,
    /// Query tokens.
    pub nq: usize,
    /// Key/value tokens (>= 1).
    pub nk: usize,
    pub heads: usize,
    /// Head dim, at most `MAX_HEAD_DIM`; a multiple of 8 for the CUDA kernels (ops pads others).
    pub head_dim: usize,
    /// Multiplies q . k before the softmax (usually 1/sqrt(D)); finite.
    pub scale: f32,
    /// Key j visible to query i only if j <= i (then nq == nk).
    pub causal: bool,
}

impl AttentionParams {
    /// Elements between consecutive tokens of one tensor: H * D.
    pub fn row_stride(&self) -> usize {
        self.heads * self.head_dim
    }
}
