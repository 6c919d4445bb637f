//! The TopK sparse autoencoder: its parameters (SAELens' layout), their initialisations, and one
//! training step's three parts side by side, as `ops::sae` runs them: the forward pass with the
//! cache the backward needs, the backward, and the Adam update (the loss between forward and
//! backward is in loss.rs; train.rs strings them together in `train_step`).
//!
//! Legend: B = rows, d = d_in, n = d_sae, k = active latents per row.
//!   xs = x * input_scale                      [B, d]   (input_scale 1 unless scaling is on)
//!   xc = xs - b_dec                           [B, d]
//!   pre = xc W_enc + b_enc                    [B, n]   (never materialised on CUDA)
//!   z = TopK_k(relu?(pre))                    code: vals [B, k], idx [B, k]
//!   x_hat = z W_dec + b_dec                   [B, d]

use crate::ops;
use crate::ops::optim::AdamScalars;
use crate::ops::sae::{AdamSlot, AdamSlots, AuxBackward, Centered, Code, Decoded, Grads, SparseBackward};
use crate::rng;
use crate::tensor::{DType, Device, Tensor};
use crate::{Error, Result};

/// The four parameters (f32), as SAELens stores them.
#[derive(Debug, Clone)]
pub struct SaeParams {
    /// [d, n]
    pub w_enc: Tensor,
    /// [n]
    pub b_enc: Tensor,
    /// [n, d]: row j is latent j's direction (unit norm).
    pub w_dec: Tensor,
    /// [d]
    pub b_dec: Tensor,
}

impl SaeParams {
    /// The tensors with their safetensors names, in SAELens' order.
    pub fn named(&self) -> [(&'static str, &Tensor); 4] {
        [("W_enc", &self.w_enc), ("b_enc", &self.b_enc), ("W_dec", &self.w_dec), ("b_dec", &self.b_dec)]
    }

    /// Zeros shaped like the parameters, of `dtype`, on their device (Adam's moments).
    pub fn zeros_like(&self, dtype: DType) -> Result<SaeParams> {
        let dev = self.w_enc.device();
        let z = |t: &Tensor| Tensor::zeros(t.shape().clone(), dtype, &dev);
        Ok(SaeParams { w_enc: z(&self.w_enc)?, b_enc: z(&self.b_enc)?, w_dec: z(&self.w_dec)?, b_dec: z(&self.b_dec)? })
    }

    pub fn to_device(&self, device: &Device) -> Result<SaeParams> {
        Ok(SaeParams {
            w_enc: self.w_enc.to_device(device)?,
            b_enc: self.b_enc.to_device(device)?,
            w_dec: self.w_dec.to_device(device)?,
            b_dec: self.b_dec.to_device(device)?,
        })
    }

    /// These parameters with gradients `g` and moments `m`, `v`, as the Adam op takes them.
    pub fn adam_slots<'a>(&'a mut self, g: &'a Grads, m: &'a mut SaeParams, v: &'a mut SaeParams) -> AdamSlots<'a> {
        AdamSlots {
            w_enc: AdamSlot { p: &mut self.w_enc, g: &g.w_enc, m: &mut m.w_enc, v: &mut v.w_enc },
            b_enc: AdamSlot { p: &mut self.b_enc, g: &g.b_enc, m: &mut m.b_enc, v: &mut v.b_enc },
            b_dec: AdamSlot { p: &mut self.b_dec, g: &g.b_dec, m: &mut m.b_dec, v: &mut v.b_dec },
            w_dec: AdamSlot { p: &mut self.w_dec, g: &g.w_dec, m: &mut m.w_dec, v: &mut v.w_dec },
        }
    }

    /// (d, n), checking that the four shapes agree.
    pub fn dims(&self) -> Result<(usize, usize)> {
        let (d, n) = self.w_enc.dims2("SaeParams")?;
        let ok = self.b_enc.dims() == [n] && self.w_dec.dims() == [n, d] && self.b_dec.dims() == [d];
        if !ok {
            return Err(Error::BadInput(format!(
                "SAE parameters disagree: W_enc {}, b_enc {}, W_dec {}, b_dec {} (expected [d, n], [n], [n, d], [d])",
                self.w_enc.shape(),
                self.b_enc.shape(),
                self.w_dec.shape(),
                self.b_dec.shape()
            )));
        }
        Ok((d, n))
    }
}

/// How the weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// Revelio's: kaiming_uniform_ with torch's defaults for both matrices (fan_in = size(1):
    /// W_enc ~ U(+-sqrt(6/n)), W_dec ~ U(+-sqrt(6/d))), then W_dec's rows scaled to unit norm.
    Revelio,
    /// Gao et al.'s tied start: W_dec as Revelio's, W_enc = W_dec^T.
    Tied,
}

impl Init {
    pub fn parse(s: &str) -> Result<Init> {
        match s {
            "revelio" => Ok(Init::Revelio),
            "tied" => Ok(Init::Tied),
            _ => Err(Error::BadOption(format!("--init {s}: expected revelio or tied"))),
        }
    }
}

/// What defines an SAE's function (everything else is training).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SaeConfig {
    pub d_in: usize,
    pub d_sae: usize,
    pub k: usize,
    /// ReLU before the top-k (the stable-concepts SAE); Revelio's has none.
    pub relu: bool,
    /// Multiplies inputs before anything else (chosen so that E||x||^2 = d when training with
    /// input scaling); 1 when off.
    pub input_scale: f32,
}

impl SaeConfig {
    pub fn validate(&self) -> Result<()> {
        if self.d_in == 0 || self.d_sae == 0 {
            return Err(Error::BadOption(format!("d_in = {} and d_sae = {} must be positive", self.d_in, self.d_sae)));
        }
        if self.k == 0 || self.k > self.d_sae {
            return Err(Error::BadOption(format!("k = {} must be in 1..={} (d_sae)", self.k, self.d_sae)));
        }
        if !(self.input_scale.is_finite() && self.input_scale > 0.0) {
            return Err(Error::BadOption(format!("input scale {} must be a positive number", self.input_scale)));
        }
        Ok(())
    }
}

/// One forward pass, with what the backward needs.
#[derive(Debug, Clone)]
pub struct Forward {
    /// xc = xs - b_dec (f32, and bf16 on CUDA).
    pub centered: Centered,
    pub code: Code,
    /// target xs: residual xs - x_hat, dots with the code's rows, squared error per row.
    pub decoded: Decoded,
}

/// A TopK SAE on one device.
#[derive(Debug, Clone)]
pub struct Sae {
    pub cfg: SaeConfig,
    pub params: SaeParams,
    /// W_enc in bf16 (the fused CUDA encoder's operand); kept in step by the optimizer.
    pub w_enc16: Option<Tensor>,
}

/// n values U(-bound, bound) from stream `seed` (counter-based: the same on every device).
fn uniform(seed: u64, n: usize, bound: f32) -> Vec<f32> {
    (0..n as u64).map(|i| (2.0 * rng::uniform(seed, i) - 1.0) * bound).collect()
}

impl Sae {
    /// A freshly initialised SAE with b_enc = 0 and b_dec = 0 (the trainer sets b_dec from the
    /// first batch).
    pub fn init(cfg: SaeConfig, init: Init, seed: u64, device: &Device) -> Result<Sae> {
        cfg.validate()?;
        let (d, n) = (cfg.d_in, cfg.d_sae);
        let mut w_dec = Tensor::from_vec(uniform(rng::derive(seed, &[2]), n * d, (6.0 / d as f64).sqrt() as f32), [n, d], &Device::Cpu)?;
        ops::sae::normalize_rows(&mut w_dec)?;
        let w_enc = match init {
            Init::Revelio => Tensor::from_vec(uniform(rng::derive(seed, &[1]), d * n, (6.0 / n as f64).sqrt() as f32), [d, n], &Device::Cpu)?,
            Init::Tied => ops::permute(&w_dec, &[1, 0])?,
        };
        let params = SaeParams {
            w_enc,
            b_enc: Tensor::zeros([n], DType::F32, &Device::Cpu)?,
            w_dec,
            b_dec: Tensor::zeros([d], DType::F32, &Device::Cpu)?,
        };
        Sae::from_params(cfg, params.to_device(device)?)
    }

    /// An SAE from parameters (f32, on the device it will run on).
    pub fn from_params(cfg: SaeConfig, params: SaeParams) -> Result<Sae> {
        cfg.validate()?;
        let (d, n) = params.dims()?;
        if (d, n) != (cfg.d_in, cfg.d_sae) {
            return Err(Error::BadInput(format!(
                "SAE weights are d_in = {d}, d_sae = {n}; the config says d_in = {}, d_sae = {}",
                cfg.d_in, cfg.d_sae
            )));
        }
        let mut sae = Sae { cfg, params, w_enc16: None };
        sae.refresh_shadow()?;
        Ok(sae)
    }

    pub fn device(&self) -> Device {
        self.params.w_enc.device()
    }

    /// Recomputes W_enc's bf16 shadow (CUDA only; after parameters change outside Adam).
    pub fn refresh_shadow(&mut self) -> Result<()> {
        self.w_enc16 = match self.device() {
            Device::Cpu => None,
            Device::Cuda(_) => Some(ops::to_dtype(&self.params.w_enc, DType::BF16)?),
        };
        Ok(())
    }

    /// Features of any float dtype [B, d] -> xs = x * input_scale, f32 on the SAE's device.
    pub fn scale_input(&self, x: &Tensor) -> Result<Tensor> {
        let (_, d) = x.dims2("sae input")?;
        if d != self.cfg.d_in {
            return Err(Error::BadInput(format!("features have d = {d}; this SAE takes d_in = {}", self.cfg.d_in)));
        }
        let x = ops::to_dtype(&x.to_device(&self.device())?, DType::F32)?;
        if self.cfg.input_scale == 1.0 {
            Ok(x)
        } else {
            ops::scale(&x, self.cfg.input_scale)
        }
    }

    /// The code of scaled inputs xs [B, d], and the centred input it came from.
    pub fn encode_scaled(&self, xs: &Tensor) -> Result<(Centered, Code)> {
        let centered = ops::sae::center(xs, &self.params.b_dec)?;
        let code = ops::sae::encode_topk(&centered, &self.params.w_enc, self.w_enc16.as_ref(), &self.params.b_enc, self.cfg.k, self.cfg.relu)?;
        Ok((centered, code))
    }

    /// The sparse code of raw features x [B, d] (any float dtype, any device).
    pub fn encode(&self, x: &Tensor) -> Result<Code> {
        Ok(self.encode_scaled(&self.scale_input(x)?)?.1)
    }

    /// The dense pre-activation of raw features, with ReLU: relu(xc W_enc + b_enc) [B, n]
    /// (what Revelio's analysis ranks images by).
    pub fn dense_activations(&self, x: &Tensor) -> Result<Tensor> {
        let centered = ops::sae::center(&self.scale_input(x)?, &self.params.b_dec)?;
        ops::sae::encode_dense(&centered.xc, &self.params.w_enc, &self.params.b_enc, true)
    }

    /// The forward pass on scaled inputs xs [B, d] (f32, on the SAE's device).
    pub fn forward(&self, xs: &Tensor) -> Result<Forward> {
        let (centered, code) = self.encode_scaled(xs)?;
        let decoded = ops::sae::decode(xs, Some(&self.params.b_dec), &code, &self.params.w_dec)?;
        Ok(Forward { centered, code, decoded })
    }

    /// The backward pass of `fwd`, by hand: the loss gives dL/dx_hat = -c * (xs - x_hat), and
    /// AuxK (when on) its own scale on its residual; `ops::sae::sparse_backward` turns that into
    /// the four parameter gradients touching only the latents in the codes (see
    /// `SparseBackward` for the formulas). `resid_sum` is the column sums of the main residual.
    ///
    /// Accumulation rule: every gradient is returned fresh (`=`); nothing is added into existing
    /// buffers, so there is nothing to zero between steps. The top-k support is treated as fixed
    /// (the selection has no gradient), as autograd through torch.topk does.
    pub fn backward(&self, fwd: &Forward, c: f32, resid_sum: &Tensor, aux: Option<AuxBackward>) -> Result<Grads> {
        ops::sae::sparse_backward(&SparseBackward {
            xc: &fwd.centered.xc,
            w_enc: &self.params.w_enc,
            w_dec: &self.params.w_dec,
            code: &fwd.code,
            dot: &fwd.decoded.dot,
            resid: &fwd.decoded.resid,
            resid_sum,
            c,
            relu: self.cfg.relu,
            aux,
        })
    }

    /// One Adam step with gradients `g` and moments `m`, `v` (shaped like the parameters), then
    /// W_dec's rows back to unit norm and W_enc's bf16 shadow refreshed.
    pub fn adam_step(&mut self, g: &Grads, m: &mut SaeParams, v: &mut SaeParams, s: &AdamScalars) -> Result<()> {
        ops::sae::adam_step(self.params.adam_slots(g, m, v), self.w_enc16.as_mut(), s)
    }
}
