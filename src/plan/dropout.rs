//! The dropout plan: which draws of the counter-based generator make the mask.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropoutKind {
    /// One draw per element (torch.nn.Dropout): draw i = the flat element index.
    Elementwise,
    /// One draw per (n, c) of x [N, C, *] (torch.nn.Dropout2d): draw n*C + c drops the whole
    /// channel.
    Channels,
}

/// The mask's parameters, shared by the backends: element i uses draw `i / group`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DropoutPlan {
    pub p: f32,
    /// 1 / (1 - p), rounded to f32 once.
    pub scale: f32,
    pub seed: u64,
    /// Elements per draw: 1, or the product of the dims after C for `Channels`.
    pub group: usize,
}
