//! DDIM, as diffusers' `DDIMScheduler` (checked against diffusers 0.42
//! `schedulers/scheduling_ddim.py`): the noise schedule (betas, alphas_cumprod in f32 as torch
//! computes them, :213-230), the inference timesteps for each spacing (`set_timesteps`,
//! :355-380), `add_noise` (what feature extraction uses, :517) and `step` with any eta (what sampling
//! uses, :384).
//!
//! Legend: t = a training-schedule index in [0, num_train_timesteps); abar_t = alphas_cumprod[t];
//! x: [B, ...] latents, any rank >= 1, on any device and float dtype.
//!
//! Supported: `beta_schedule` linear / scaled_linear, `prediction_type` epsilon / v_prediction /
//! sample, `timestep_spacing` leading / trailing / linspace, `set_alpha_to_one`, `steps_offset`.
//! Rejected with an error naming the field: trained_betas, clip_sample = true (diffusers'
//! default, but every SD config sets it false), thresholding, rescale_betas_zero_snr, other
//! schedules.

use crate::config_fields;
use crate::io::config::{parse_config, read_config};
use crate::ops;
use crate::tensor::{Shape, Tensor};
use crate::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// `scheduler_config.json` under diffusers' field names; a missing field takes
/// `DDIMScheduler.__init__`'s default. Unknown fields (`_class_name`, `skip_prk_steps`,
/// `clip_sample_range`, ...) are ignored, as diffusers ignores them.
#[derive(Debug, Clone, PartialEq)]
pub struct DdimConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: String,
    pub trained_betas: Option<Value>,
    pub clip_sample: bool,
    pub set_alpha_to_one: bool,
    pub steps_offset: usize,
    pub prediction_type: String,
    pub timestep_spacing: String,
    pub rescale_betas_zero_snr: bool,
    pub thresholding: bool,
}

impl Default for DdimConfig {
    /// diffusers' defaults (`DDIMScheduler.__init__`).
    fn default() -> Self {
        DdimConfig {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: "linear".into(),
            trained_betas: None,
            clip_sample: true,
            set_alpha_to_one: true,
            steps_offset: 0,
            prediction_type: "epsilon".into(),
            timestep_spacing: "leading".into(),
            rescale_betas_zero_snr: false,
            thresholding: false,
        }
    }
}

impl DdimConfig {
    /// SD 1.x's scheduler/scheduler_config.json (runwayml/stable-diffusion-v1-5).
    pub fn sd15() -> Self {
        DdimConfig {
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: "scaled_linear".into(),
            clip_sample: false,
            set_alpha_to_one: false,
            steps_offset: 1,
            ..DdimConfig::default()
        }
    }

    /// SD 2.x (768 px, stabilityai/stable-diffusion-2-1): SD 1.x's schedule, v-prediction.
    pub fn sd21() -> Self {
        DdimConfig { prediction_type: "v_prediction".into(), ..DdimConfig::sd15() }
    }

    /// DiT's training schedule: linear betas 1e-4..0.02 over 1000 steps, epsilon prediction,
    /// diffusers' defaults for the rest (set_alpha_to_one, steps_offset 0), no clipping.
    pub fn dit() -> Self {
        DdimConfig { clip_sample: false, ..DdimConfig::default() }
    }

    /// Reads a diffusers `scheduler_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        parse_config(path, &read_config(path, "scheduler")?, Self::from_map, Self::validate)
    }

    /// The config from a parsed JSON object, field by field so that a bad value is named.
    /// Unknown keys are ignored without a warning, as diffusers ignores them.
    fn from_map(_source: &Path, map: &Map<String, Value>) -> std::result::Result<Self, String> {
        let mut c = DdimConfig::default();
        config_fields!(map, c;
            num_train_timesteps,
            beta_start,
            beta_end,
            beta_schedule,
            trained_betas,
            clip_sample,
            set_alpha_to_one,
            steps_offset,
            prediction_type,
            timestep_spacing,
            rescale_betas_zero_snr,
            thresholding
        );
        Ok(c)
    }

    /// Rejects what we do not implement, naming the field and its value.
    fn validate(&self) -> std::result::Result<(), String> {
        if self.num_train_timesteps < 1 {
            return Err("num_train_timesteps must be at least 1".into());
        }
        if !matches!(self.beta_schedule.as_str(), "linear" | "scaled_linear") {
            return Err(format!("beta_schedule {:?} is not supported (linear, scaled_linear)", self.beta_schedule));
        }
        if self.trained_betas.as_ref().is_some_and(|v| !v.is_null()) {
            return Err("trained_betas is set: not supported (use beta_schedule)".into());
        }
        if self.clip_sample {
            return Err("clip_sample is true (diffusers' default when the field is absent): not supported; SD configs set it false".into());
        }
        if self.thresholding {
            return Err("thresholding is true: not supported".into());
        }
        if self.rescale_betas_zero_snr {
            return Err("rescale_betas_zero_snr is true: not supported".into());
        }
        if !matches!(self.prediction_type.as_str(), "epsilon" | "v_prediction" | "sample") {
            return Err(format!(
                "prediction_type {:?} is not supported (epsilon, v_prediction, sample)",
                self.prediction_type
            ));
        }
        if !matches!(self.timestep_spacing.as_str(), "leading" | "trailing" | "linspace") {
            return Err(format!(
                "timestep_spacing {:?} is not supported (leading, trailing, linspace)",
                self.timestep_spacing
            ));
        }
        Ok(())
    }
}

/// torch.linspace(start, end, n, dtype=float32) bit for bit as torch's CPU kernel computes it:
/// start and end rounded to f32, an f32 step, the first half counted up from start and the
/// second half down from end, each value one fused multiply-add (checked against torch 2.15).
fn linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    let (s, e) = (start as f32, end as f32);
    if n == 1 {
        return vec![s];
    }
    let step = (e - s) / (n - 1) as f32;
    let half = n / 2;
    (0..n).map(|i| if i < half { step.mul_add(i as f32, s) } else { (-step).mul_add((n - 1 - i) as f32, e) }).collect()
}

/// The schedule and, after `set_timesteps`, the inference timesteps.
#[derive(Debug, Clone)]
pub struct Ddim {
    config: DdimConfig,
    /// [num_train_timesteps] f32, as diffusers' `betas`.
    betas: Vec<f32>,
    /// [num_train_timesteps] f32, as diffusers' `alphas_cumprod`.
    alphas_cumprod: Vec<f32>,
    /// abar used past the last step: 1, or alphas_cumprod[0] (`set_alpha_to_one`).
    final_alpha_cumprod: f32,
    num_inference_steps: Option<usize>,
    timesteps: Vec<usize>,
}

impl Ddim {
    pub fn new(config: DdimConfig) -> Result<Self> {
        config.validate().map_err(|msg| Error::Unsupported(format!("DDIM scheduler: {msg}")))?;
        let n = config.num_train_timesteps;
        // betas in f32 (scaled_linear: linspace of the square roots, squared in f32).
        let betas: Vec<f32> = match config.beta_schedule.as_str() {
            "linear" => linspace_f32(config.beta_start, config.beta_end, n),
            _ => linspace_f32(config.beta_start.sqrt(), config.beta_end.sqrt(), n).into_iter().map(|b| b * b).collect(),
        };
        // torch.cumprod on the CPU accumulates f32 input in f64 and rounds each output to f32.
        let mut acc = 1.0f64;
        let alphas_cumprod: Vec<f32> = betas
            .iter()
            .map(|&b| {
                acc *= (1.0f32 - b) as f64;
                acc as f32
            })
            .collect();
        let final_alpha_cumprod = if config.set_alpha_to_one { 1.0 } else { alphas_cumprod[0] };
        Ok(Ddim {
            config,
            betas,
            alphas_cumprod,
            final_alpha_cumprod,
            num_inference_steps: None,
            timesteps: Vec::new(),
        })
    }

    /// The scheduler of a diffusers `scheduler/` folder (or a path to its json file).
    pub fn from_pretrained(path: &Path) -> Result<Self> {
        let is_json = path.extension().is_some_and(|e| e == "json");
        let file = if is_json { path.to_path_buf() } else { path.join("scheduler_config.json") };
        Ddim::new(DdimConfig::from_file(&file)?)
    }

    /// DiT's schedule (`DdimConfig::dit`).
    pub fn dit_default() -> Self {
        Ddim::new(DdimConfig::dit()).expect("DiT's built-in config is valid")
    }

    pub fn config(&self) -> &DdimConfig {
        &self.config
    }
    /// [num_train_timesteps] betas.
    pub fn betas(&self) -> &[f32] {
        &self.betas
    }
    /// [num_train_timesteps] abar_t.
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }
    /// The timesteps of the last `set_timesteps`, highest first (empty before).
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    fn abar(&self, t: usize, op: &'static str) -> Result<f32> {
        self.alphas_cumprod.get(t).copied().ok_or_else(|| {
            Error::op(op, format!("timestep {t} out of range: the schedule has {} steps", self.alphas_cumprod.len()))
        })
    }

    /// Chooses `num_inference_steps` timesteps by the config's spacing and returns them,
    /// highest first (diffusers `DDIMScheduler.set_timesteps`):
    /// - leading: i * (T / n) (integer ratio) + steps_offset, i = n-1..0
    /// - trailing: round(T - i * T / n) - 1 (float ratio, numpy's arange and round-half-even)
    /// - linspace: round(linspace(0, T - 1, n)) reversed
    pub fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<Vec<usize>> {
        let t_train = self.config.num_train_timesteps;
        let n = num_inference_steps;
        if n == 0 || n > t_train {
            return Err(Error::BadOption(format!(
                "DDIM set_timesteps: num_inference_steps {n} must be in 1..={t_train} (num_train_timesteps)"
            )));
        }
        let timesteps: Vec<usize> = match self.config.timestep_spacing.as_str() {
            "linspace" => {
                // np.linspace(0, T-1, n): i * ((T-1)/(n-1)), the last one exactly T-1.
                let stop = (t_train - 1) as f64;
                let step = if n > 1 { stop / (n - 1) as f64 } else { 0.0 };
                (0..n)
                    .rev()
                    .map(|i| if i == n - 1 && n > 1 { stop } else { i as f64 * step })
                    .map(|v| v.round_ties_even() as usize)
                    .collect()
            }
            "leading" => {
                let ratio = t_train / n;
                (0..n).rev().map(|i| i * ratio + self.config.steps_offset).collect()
            }
            _ => {
                // np.arange(T, 0, -T/n): ceil(T / (T/n)) values start + i * delta, where numpy
                // takes delta as (start + step) - start.
                let step = -(t_train as f64 / n as f64);
                let start = t_train as f64;
                let len = ((0.0 - start) / step).ceil() as usize;
                let delta = (start + step) - start;
                let ts: Vec<i64> = (0..len).map(|i| (start + i as f64 * delta).round_ties_even() as i64 - 1).collect();
                // For some n (61, 103, 121, ... with T = 1000) the float arange has n + 1
                // values and diffusers' list ends in -1 (scheduling_ddim.py:375, set_timesteps,
                // "trailing" branch), which its step would index from the end. Refuse those.
                if ts.len() != n || ts.iter().any(|&t| t < 0) {
                    return Err(Error::BadOption(format!(
                        "DDIM set_timesteps: trailing spacing with {n} steps gives diffusers' timesteps {:?} (n + 1 values, the last -1, from a float arange); choose another step count",
                        &ts[ts.len().saturating_sub(3)..]
                    )));
                }
                ts.into_iter().map(|t| t as usize).collect()
            }
        };
        self.num_inference_steps = Some(n);
        self.timesteps = timesteps.clone();
        Ok(timesteps)
    }

    /// x_t = sqrt(abar_t) * x0 + sqrt(1 - abar_t) * noise (diffusers `add_noise`).
    /// x0, noise: [B, ...] of one shape; t: one timestep for all samples, or B of them.
    pub fn add_noise(&self, x0: &Tensor, noise: &Tensor, t: &[usize]) -> Result<Tensor> {
        const OP: &str = "ddim_add_noise";
        let b = *x0.dims().first().ok_or_else(|| Error::op(OP, "x0 is a rank-0 tensor; expected [B, ...]"))?;
        crate::ensure_op!(
            x0.shape() == noise.shape(),
            OP,
            "x0 {} and noise {} differ in shape",
            x0.shape(),
            noise.shape()
        );
        crate::ensure_op!(
            t.len() == 1 || t.len() == b,
            OP,
            "{} timesteps for x0 {}: expected 1 or {b} (one per sample)",
            t.len(),
            x0.shape()
        );
        let mut sa = Vec::with_capacity(t.len());
        let mut sb = Vec::with_capacity(t.len());
        for &ti in t {
            let abar = self.abar(ti, OP)?;
            sa.push(abar.sqrt());
            sb.push((1.0 - abar).sqrt());
        }
        // Coefficients shaped [len(t), 1, 1, ...] to broadcast over each sample.
        let mut dims = vec![1; x0.rank()];
        dims[0] = t.len();
        let coef = |v: Vec<f32>| -> Result<Tensor> {
            ops::to_dtype(&Tensor::from_vec(v, Shape::new(dims.clone()), &x0.device())?, x0.dtype())
        };
        ops::add(&ops::mul(x0, &coef(sa)?)?, &ops::mul(noise, &coef(sb)?)?)
    }

    /// One eta = 0 DDIM step from timestep `t` (`step_eta` with eta 0).
    pub fn step(&self, model_output: &Tensor, t: usize, sample: &Tensor) -> Result<Tensor> {
        self.step_eta(model_output, t, sample, 0.0, None)
    }

    /// One DDIM step from timestep `t` (diffusers `DDIMScheduler.step`, scheduling_ddim.py
    /// :384-470): predict x0 and eps from `model_output` by the prediction type, then
    /// prev = sqrt(abar_prev) * x0 + sqrt(1 - abar_prev - std^2) * eps + std * noise, with
    /// std = eta * sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)) (all f32, as
    /// torch computes them), prev = t - T / n (integer ratio, whatever the spacing: :445 does
    /// this even for trailing and linspace) and abar_prev = final_alpha_cumprod when prev < 0.
    /// model_output, sample: [B, ...] of one shape -> prev_sample of that shape; `noise`
    /// (diffusers' `variance_noise`, same shape) is needed when eta > 0.
    pub fn step_eta(&self, model_output: &Tensor, t: usize, sample: &Tensor, eta: f32, noise: Option<&Tensor>) -> Result<Tensor> {
        const OP: &str = "ddim_step";
        let n = self.num_inference_steps.ok_or_else(|| Error::op(OP, "call set_timesteps before step"))?;
        crate::ensure_op!(
            model_output.shape() == sample.shape(),
            OP,
            "model_output {} and sample {} differ in shape",
            model_output.shape(),
            sample.shape()
        );
        crate::ensure_op!(eta >= 0.0 && eta.is_finite(), OP, "eta must be finite and >= 0, got {eta}");
        let abar_t = self.abar(t, OP)?;
        let prev = t as i64 - (self.config.num_train_timesteps / n) as i64;
        let abar_prev = if prev >= 0 { self.abar(prev as usize, OP)? } else { self.final_alpha_cumprod };
        let beta_t = 1.0 - abar_t;
        let (sa, sb) = (abar_t.sqrt(), beta_t.sqrt());
        // Division by a scalar as a one-element tensor, so it rounds as torch's division does.
        let div = |x: &Tensor, s: f32| -> Result<Tensor> {
            let d = Tensor::full(vec![1], s, x.dtype(), &x.device())?;
            ops::div(x, &d)
        };
        let (x0, eps) = match self.config.prediction_type.as_str() {
            "epsilon" => (div(&ops::sub(sample, &ops::scale(model_output, sb)?)?, sa)?, model_output.clone()),
            "v_prediction" => (
                ops::sub(&ops::scale(sample, sa)?, &ops::scale(model_output, sb)?)?,
                ops::add(&ops::scale(model_output, sa)?, &ops::scale(sample, sb)?)?,
            ),
            _ => (model_output.clone(), div(&ops::sub(sample, &ops::scale(model_output, sa)?)?, sb)?),
        };
        // _get_variance: (beta_prev / beta_t) * (1 - abar_t / abar_prev)
        let variance = ((1.0 - abar_prev) / beta_t) * (1.0 - abar_t / abar_prev);
        let std = eta * variance.sqrt();
        let dir = ops::scale(&eps, (1.0 - abar_prev - std * std).sqrt())?;
        let prev_sample = ops::add(&ops::scale(&x0, abar_prev.sqrt())?, &dir)?;
        if eta == 0.0 {
            return Ok(prev_sample);
        }
        let noise = noise.ok_or_else(|| Error::op(OP, format!("eta = {eta} needs the step's noise")))?;
        crate::ensure_op!(noise.shape() == sample.shape(), OP, "noise {} and sample {} differ in shape", noise.shape(), sample.shape());
        ops::add(&prev_sample, &ops::scale(noise, std)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_check_values_of_sd15_schedule() {
        // spec/revelio.md section 0: abar_25 ~ 0.97661, abar_100 ~ 0.89422, abar_200 ~ 0.75369,
        // abar_500 ~ 0.27633.
        let d = Ddim::new(DdimConfig::sd15()).unwrap();
        let a = d.alphas_cumprod();
        for (t, v) in [(25, 0.97661), (100, 0.89422), (200, 0.75369), (500, 0.27633)] {
            assert!((a[t] as f64 - v).abs() < 1e-5, "abar_{t} = {}, expected {v}", a[t]);
        }
    }

    #[test]
    fn configs_reject_unsupported_options() {
        let bad = |f: fn(&mut DdimConfig), what: &str| {
            let mut c = DdimConfig::sd15();
            f(&mut c);
            let e = Ddim::new(c).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        };
        bad(|c| c.beta_schedule = "squaredcos_cap_v2".into(), "squaredcos_cap_v2");
        bad(|c| c.clip_sample = true, "clip_sample");
        bad(|c| c.thresholding = true, "thresholding");
        bad(|c| c.rescale_betas_zero_snr = true, "rescale_betas_zero_snr");
        bad(|c| c.trained_betas = Some(serde_json::json!([0.1, 0.2])), "trained_betas");
        bad(|c| c.prediction_type = "flow".into(), "flow");
        bad(|c| c.timestep_spacing = "karras".into(), "karras");
        let mut d = Ddim::new(DdimConfig::sd15()).unwrap();
        assert!(d.set_timesteps(0).is_err());
        assert!(d.set_timesteps(1001).is_err());
        d.config.timestep_spacing = "trailing".into();
        let e = d.set_timesteps(61).unwrap_err().to_string();
        assert!(e.contains("-1") && e.contains("61"), "{e}");
        assert_eq!(d.set_timesteps(60).unwrap().len(), 60);
    }
}
