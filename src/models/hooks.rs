//! What a hook knows and where it acts: the context of one model call inside a run (the sampling
//! step, the timestep, and for every batch row its sample and its classifier-free-guidance
//! branch), the selection a hook is declared with (steps, branch, samples), and the sink that
//! recorded values stream to. The hook context itself, which a run owns and every forward pass
//! visits, is `Taps` (src/models/taps.rs).
//!
//! Legend: B = batch rows of one call, R = the rows a hook selects (R <= B).
//!
//! A sampling loop sets a `Call` before each denoiser call (`Taps::set_call`); one-pass users
//! (extraction, `revelio forward`) leave the default: step 0, rows unknown (row i is sample i,
//! with no branch). Hooks are declared once for the whole run with a `When`, so an edit at step
//! 24 on the cond branch is data, not a counter kept in a closure.

use crate::models::taps::TapRequest;
use crate::ops;
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::sync::{Arc, Mutex};

/// Which half of a classifier-free-guidance batch a row is in. The batch is [uncond; cond]
/// (diffusers' layout, `Call::cfg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Branch {
    /// The unconditional (negative or empty prompt) half.
    Uncond,
    /// The text-conditioned half.
    Cond,
}

impl Branch {
    pub fn name(self) -> &'static str {
        match self {
            Branch::Uncond => "uncond",
            Branch::Cond => "cond",
        }
    }

    /// `uncond` or `cond` (`flag` names the option in the error).
    pub fn parse(s: &str, flag: &str) -> Result<Branch> {
        match s {
            "uncond" => Ok(Branch::Uncond),
            "cond" => Ok(Branch::Cond),
            _ => Err(Error::BadOption(format!("{flag} {s}: expected uncond or cond"))),
        }
    }
}

/// One row of a call's batch: the sample it belongs to (the prompt or image index in the run)
/// and its branch (None outside classifier-free guidance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub sample: usize,
    pub branch: Option<Branch>,
}

/// The context of one model call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Call {
    /// The sampling step, 0 = the first (the noisiest); 0 outside a sampling loop.
    pub step: usize,
    /// The scheduler timestep the model is called at.
    pub timestep: usize,
    /// One entry per batch row; empty: unknown (row i is sample i, no branch).
    pub rows: Vec<Row>,
}

impl Call {
    /// A call at `step` / `timestep` on `samples`: with `cfg`, the batch is [uncond rows; cond
    /// rows] of `samples` each (2 * samples.len() rows), else one cond row per sample.
    pub fn cfg(step: usize, timestep: usize, samples: &[usize], cfg: bool) -> Call {
        let half = |branch| samples.iter().map(move |&sample| Row { sample, branch: Some(branch) });
        let rows = if cfg { half(Branch::Uncond).chain(half(Branch::Cond)).collect() } else { half(Branch::Cond).collect() };
        Call { step, timestep, rows }
    }

    /// A one-pass call (no CFG) on `samples` at `timestep`.
    pub fn plain(timestep: usize, samples: &[usize]) -> Call {
        Call { step: 0, timestep, rows: samples.iter().map(|&sample| Row { sample, branch: None }).collect() }
    }

    /// Row `i` of a batch of `b` (the default row when the rows are unknown).
    pub fn row(&self, i: usize) -> Row {
        self.rows.get(i).copied().unwrap_or(Row { sample: i, branch: None })
    }
}

/// Where a hook acts; the default is every call and every row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct When {
    /// Sampling steps (None: every step).
    pub steps: Option<Vec<usize>>,
    /// The CFG branch (None: every row whatever its branch).
    pub branch: Option<Branch>,
    /// Samples (None: all).
    pub samples: Option<Vec<usize>>,
}

impl When {
    pub fn always() -> When {
        When::default()
    }

    /// Whether the hook acts at all in `call` (its step).
    pub fn at_step(&self, call: &Call) -> bool {
        self.steps.as_ref().is_none_or(|s| s.contains(&call.step))
    }

    /// The rows of a batch of `b` that the hook acts on in `call`, ascending (empty: none). A
    /// branch asked of a call without CFG rows is an error naming `path`.
    pub fn rows(&self, call: &Call, b: usize, path: &str) -> Result<Vec<usize>> {
        if !self.at_step(call) {
            return Ok(Vec::new());
        }
        if !call.rows.is_empty() && call.rows.len() != b {
            return Err(Error::Internal(format!("{path}: the call context lists {} rows, the batch has {b}", call.rows.len())));
        }
        if let Some(want) = self.branch {
            if call.rows.is_empty() || call.rows.iter().all(|r| r.branch.is_none()) {
                return Err(Error::BadOption(format!(
                    "a hook at {path} acts on the {} branch, but this call is not a classifier-free-guidance batch",
                    want.name()
                )));
            }
        }
        Ok((0..b)
            .filter(|&i| {
                let r = call.row(i);
                self.branch.is_none_or(|w| r.branch == Some(w)) && self.samples.as_ref().is_none_or(|s| s.contains(&r.sample))
            })
            .collect())
    }
}

/// What a hook sees besides the values: the module, the call, and the batch rows it acts on
/// (the values it gets are these rows, in this order).
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    pub path: &'a str,
    pub call: &'a Call,
    pub rows: &'a [usize],
}

impl Site<'_> {
    /// The sample and branch of each selected row.
    pub fn row_info(&self) -> Vec<Row> {
        self.rows.iter().map(|&i| self.call.row(i)).collect()
    }
}

/// Replaces a module's output: `edit(site, input, output) -> new output`, each [R, ...] over
/// `site.rows` (the new output has the output's shape).
pub type EditFn = Box<dyn FnMut(&Site, &Tensor, &Tensor) -> Result<Tensor> + Send>;

/// Where recorded values go, as the pass produces them (nothing is held to its end).
pub trait Sink: Send {
    /// `value`: tap `tap` over `site.rows`, [R, ...] (the output, or output - input for `:delta`).
    fn record(&mut self, site: &Site, tap: &TapRequest, value: &Tensor) -> Result<()>;
}

/// A sink shared with the code that owns the run (which reads or flushes it between calls).
impl<S: Sink> Sink for Arc<Mutex<S>> {
    fn record(&mut self, site: &Site, tap: &TapRequest, value: &Tensor) -> Result<()> {
        self.lock().map_err(|_| Error::Internal("a hook sink panicked earlier".into()))?.record(site, tap, value)
    }
}

/// Contiguous runs of ascending `rows`: (start, len).
fn runs(rows: &[usize]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &r in rows {
        match out.last_mut() {
            Some((s, n)) if *s + *n == r => *n += 1,
            _ => out.push((r, 1)),
        }
    }
    out
}

/// Rows `rows` (ascending) of x: [B, ...] -> [R, ...]; x itself when they are all of it.
pub fn select_rows(x: &Tensor, rows: &[usize]) -> Result<Tensor> {
    let b = x.dims().first().copied().unwrap_or(0);
    if rows.len() == b {
        return Ok(x.clone());
    }
    let parts = runs(rows).into_iter().map(|(s, n)| x.narrow0(s, n)).collect::<Result<Vec<_>>>()?;
    ops::cat(&parts.iter().collect::<Vec<_>>(), 0)
}

/// x: [B, ...] with rows `rows` (ascending) replaced by `new`: [R, ...]; `new` itself when the
/// rows are all of x.
pub fn replace_rows(x: &Tensor, rows: &[usize], new: &Tensor) -> Result<Tensor> {
    let b = x.dims().first().copied().unwrap_or(0);
    if rows.len() == b {
        return Ok(new.clone());
    }
    let (mut parts, mut next, mut taken) = (Vec::new(), 0, 0);
    for (s, n) in runs(rows) {
        if s > next {
            parts.push(x.narrow0(next, s - next)?);
        }
        parts.push(new.narrow0(taken, n)?);
        taken += n;
        next = s + n;
    }
    if next < b {
        parts.push(x.narrow0(next, b - next)?);
    }
    ops::cat(&parts.iter().collect::<Vec<_>>(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Device;

    #[test]
    fn cfg_rows_are_uncond_then_cond() {
        let c = Call::cfg(3, 501, &[7, 8], true);
        let b: Vec<_> = c.rows.iter().map(|r| (r.sample, r.branch)).collect();
        assert_eq!(b, [(7, Some(Branch::Uncond)), (8, Some(Branch::Uncond)), (7, Some(Branch::Cond)), (8, Some(Branch::Cond))]);
        let w = When { steps: Some(vec![3]), branch: Some(Branch::Cond), samples: Some(vec![8]) };
        assert_eq!(w.rows(&c, 4, "x").unwrap(), [3]);
        assert!(w.rows(&Call { step: 2, ..c.clone() }, 4, "x").unwrap().is_empty());
        let plain = Call { step: 3, ..Call::default() };
        assert!(w.rows(&plain, 4, "x").unwrap_err().to_string().contains("cond branch"));
        assert_eq!(When::always().rows(&Call::default(), 3, "x").unwrap(), [0, 1, 2]);
    }

    #[test]
    fn rows_are_selected_and_put_back() {
        let x = Tensor::from_vec((0..10).map(|v| v as f32).collect::<Vec<_>>(), [5, 2], &Device::Cpu).unwrap();
        let rows = [1, 2, 4];
        let s = select_rows(&x, &rows).unwrap();
        assert_eq!(s.to_f32_vec().unwrap(), [2., 3., 4., 5., 8., 9.]);
        let doubled = ops::scale(&s, 2.0).unwrap();
        let y = replace_rows(&x, &rows, &doubled).unwrap();
        assert_eq!(y.to_f32_vec().unwrap(), [0., 1., 4., 6., 8., 10., 6., 7., 16., 18.]);
        assert_eq!(replace_rows(&x, &rows, &s).unwrap().to_f32_vec().unwrap(), x.to_f32_vec().unwrap());
    }
}
