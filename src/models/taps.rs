//! Taps: named points of a forward pass whose values the caller wants back, and points whose
//! value the caller replaces in flight (an edit: the interventions of the concepts study add or
//! remove SAE features in the bottleneck).
//!
//! A tap is a module path as diffusers names it (`up_blocks.1`, `mid_block.attentions.0`,
//! `down_blocks.2.resnets.1`, `transformer_blocks.7`), optionally with the suffix `:delta`
//! (output minus input: the residual update of a transformer block). Models resolve their short
//! aliases (`mid`, `up.1`, `block.7`) to paths. The model calls `visit` at the end of every
//! tappable module, in execution order, and checks `done` after each block: once every
//! requested value is recorded, no edit is pending and the caller does not want the model's
//! output, the forward pass returns early (no work past the deepest tap).

use crate::ops;
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::collections::HashMap;

/// One requested value: `name` as the caller wrote it, `path` the module path it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapRequest {
    pub name: String,
    pub path: String,
    /// Output minus input instead of the output.
    pub delta: bool,
}

/// Replaces a module's output: `edit(input, output) -> new output` (same shape).
pub type Edit = Box<dyn FnMut(&Tensor, &Tensor) -> Result<Tensor> + Send>;

pub struct Taps {
    requests: Vec<TapRequest>,
    values: HashMap<String, Tensor>,
    edits: HashMap<String, Edit>,
    edits_pending: usize,
    want_output: bool,
    /// Every path visited so far, in order (the execution trace).
    visited: Vec<String>,
}

impl Default for Taps {
    /// No taps, no edits: the plain forward pass.
    fn default() -> Self {
        Taps::new(Vec::new(), true)
    }
}

impl Taps {
    /// `want_output`: the caller needs the model's final output (no early stop).
    pub fn new(requests: Vec<TapRequest>, want_output: bool) -> Taps {
        Taps { requests, values: HashMap::new(), edits: HashMap::new(), edits_pending: 0, want_output, visited: Vec::new() }
    }

    /// A `Taps` recording `names`, each resolved to a module path by `resolve` (a model's
    /// `resolve_tap`); `want_output` false lets the pass stop after the last of them.
    pub fn resolve(names: &[&str], want_output: bool, resolve: impl Fn(&str) -> Result<TapRequest>) -> Result<Taps> {
        let requests = names.iter().map(|n| resolve(n)).collect::<Result<Vec<_>>>()?;
        Ok(Taps::new(requests, want_output))
    }

    /// Replaces the output of module `path` with `edit(input, output)` when the pass gets there.
    pub fn edit(&mut self, path: &str, edit: Edit) {
        if self.edits.insert(path.to_string(), edit).is_none() {
            self.edits_pending += 1;
        }
    }

    pub fn requests(&self) -> &[TapRequest] {
        &self.requests
    }

    /// Whether anything is requested or edited at `path` (the model may then keep the input).
    pub fn wants(&self, path: &str) -> bool {
        self.edits.contains_key(path) || self.requests.iter().any(|r| r.path == path)
    }

    /// The end of module `path`: records what is requested there (before any edit, so a tap
    /// sees what the model computed) and returns the output, edited if an edit is set.
    pub fn visit(&mut self, path: &str, input: &Tensor, output: Tensor) -> Result<Tensor> {
        self.visited.push(path.to_string());
        for r in self.requests.iter().filter(|r| r.path == path) {
            let v = if r.delta {
                if input.shape() != output.shape() {
                    return Err(Error::BadOption(format!(
                        "tap {}: `:delta` needs input and output of one shape, {path} maps {} to {}",
                        r.name,
                        input.shape(),
                        output.shape()
                    )));
                }
                ops::sub(&output, input)?
            } else {
                output.clone()
            };
            self.values.insert(r.name.clone(), v);
        }
        match self.edits.get_mut(path) {
            Some(edit) => {
                let edited = edit(input, &output)?;
                if edited.shape() != output.shape() {
                    return Err(Error::BadInput(format!(
                        "edit at {path} returned shape {}, the module output is {}",
                        edited.shape(),
                        output.shape()
                    )));
                }
                self.edits_pending -= 1;
                Ok(edited)
            }
            None => Ok(output),
        }
    }

    /// True when the pass can stop: all values recorded, no edit pending, output not wanted.
    pub fn done(&self) -> bool {
        !self.want_output && self.edits_pending == 0 && self.values.len() == self.requests.len()
    }

    /// The paths visited so far, in execution order (what ran: an early stop shows here).
    pub fn visited(&self) -> &[String] {
        &self.visited
    }

    /// Requests not recorded (a path the model never visited is a bug or a bad name).
    pub fn missing(&self) -> Vec<&TapRequest> {
        self.requests.iter().filter(|r| !self.values.contains_key(&r.name)).collect()
    }

    /// The recorded values by requested name; errors if any request was never reached.
    pub fn into_values(self) -> Result<HashMap<String, Tensor>> {
        let missing: Vec<String> = self.missing().iter().map(|r| format!("{} ({})", r.name, r.path)).collect();
        if !missing.is_empty() {
            return Err(Error::BadOption(format!("taps never reached in the forward pass: {}", missing.join(", "))));
        }
        Ok(self.values)
    }
}

/// Splits `name:delta` into (name, delta).
pub fn split_delta(name: &str) -> (&str, bool) {
    match name.strip_suffix(":delta") {
        Some(base) => (base, true),
        None => (name, false),
    }
}
