//! The Adam(W) plan: the hyperparameters (`AdamConfig`) and the f32 scalars of one step
//! (`AdamScalars`), computed in f64 on the host and rounded once, which both backends apply in
//! torch's per-element order (see `ops::optim`).

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW's decoupled decay (p *= 1 - lr * wd) instead of Adam's (g += wd * p).
    pub decoupled_weight_decay: bool,
}

impl AdamConfig {
    /// torch.optim.Adam's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn adam(lr: f32) -> Self {
        AdamConfig { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled_weight_decay: false }
    }

    /// torch.optim.AdamW's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
    pub fn adamw(lr: f32) -> Self {
        AdamConfig { weight_decay: 0.01, decoupled_weight_decay: true, ..AdamConfig::adam(lr) }
    }
}

/// The f64 that the shortest decimal of `x` denotes: 0.999f32 -> 0.999, the value torch's
/// Python floats hold (widening 0.999f32 gives 0.99899999..., which would move 1 - beta2 by
/// 5e-5 relative).
fn decimal_f64(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// The f32 scalars of one Adam step (see the module comment), computed in f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamScalars {
    /// wd for Adam's coupled decay, else 0.
    pub grad_decay: f32,
    /// 1 - lr * wd for AdamW, else 1.
    pub param_scale: f32,
    pub beta1: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    /// lr / (1 - beta1^step).
    pub step_size: f32,
    /// sqrt(1 - beta2^step).
    pub bc2_sqrt: f32,
    pub eps: f32,
}

impl AdamScalars {
    /// The scalars for step number `step` (>= 1).
    pub fn new(cfg: &AdamConfig, step: u64) -> Self {
        let (lr, b1, b2, wd) = (decimal_f64(cfg.lr), decimal_f64(cfg.beta1), decimal_f64(cfg.beta2), decimal_f64(cfg.weight_decay));
        let t = step.min(i32::MAX as u64) as i32;
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        let (grad_decay, param_scale) =
            if cfg.decoupled_weight_decay { (0.0, (1.0 - lr * wd) as f32) } else { (cfg.weight_decay, 1.0) };
        AdamScalars {
            grad_decay,
            param_scale,
            beta1: cfg.beta1,
            one_minus_beta1: (1.0 - b1) as f32,
            beta2: cfg.beta2,
            one_minus_beta2: (1.0 - b2) as f32,
            step_size: (lr / bc1) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            eps: cfg.eps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_use_the_decimal_hyperparameters() {
        assert_eq!(decimal_f64(0.999), 0.999f64);
        assert_eq!(decimal_f64(1e-3), 1e-3f64);
        let s = AdamScalars::new(&AdamConfig::adamw(1e-3), 1);
        assert_eq!(s.one_minus_beta2, (1.0f64 - 0.999) as f32);
        assert_eq!(s.step_size, (1e-3f64 / (1.0 - 0.9)) as f32);
        assert_eq!(s.param_scale, (1.0f64 - 1e-3 * 0.01) as f32);
        assert_eq!(s.grad_decay, 0.0);
        let s = AdamScalars::new(&AdamConfig { weight_decay: 0.1, ..AdamConfig::adam(1e-2) }, 2);
        assert_eq!((s.grad_decay, s.param_scale), (0.1, 1.0));
        assert_eq!(s.bc2_sqrt, (1.0f64 - 0.999f64.powi(2)).sqrt() as f32);
    }
}
