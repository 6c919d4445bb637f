//! Taps: named points of a model whose values a run records, and points whose value it
//! replaces in flight (edits: the interventions of the concepts study add or remove SAE
//! features in the bottleneck). `Taps` is the hook context of a run: it lives as long as the
//! run that owns it (one forward pass for extraction, every step of a sampling loop for
//! generation), knows the current call (`set_call`: step, timestep, which rows are which
//! branch; src/models/hooks.rs), and applies each hook only where its `When` says.
//!
//! A tap is a module path as diffusers names it (`up_blocks.1`, `mid_block.attentions.0`,
//! `down_blocks.2.resnets.1`, `transformer_blocks.7`), optionally with the suffix `:delta`
//! (output minus input: the residual update of a transformer block). Models resolve their short
//! aliases (`mid`, `up.1`, `block.7`) to paths. The model calls `visit` at the end of every
//! tappable module, in execution order, and checks `done` after each block: once every value
//! this call records is recorded, no edit of this call is pending and the caller does not want
//! the model's output, the forward pass returns early (no work past the deepest tap).
//!
//! Recorded values go to the run's sink as they are produced (`stream_to`); without a sink
//! they are kept by name for the current call (`into_values`), what one-pass users want.

use crate::models::hooks::{replace_rows, select_rows, Call, EditFn, Sink, Site, When};
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

/// Replaces a module's output at every call: `edit(input, output) -> new output` (same shape).
pub type Edit = Box<dyn FnMut(&Tensor, &Tensor) -> Result<Tensor> + Send>;

/// A value recorded where `when` says.
struct Record {
    request: TapRequest,
    when: When,
    /// Acts in the current call and is not recorded yet.
    pending: bool,
}

/// An edit applied where `when` says.
struct EditHook {
    path: String,
    when: When,
    edit: EditFn,
    pending: bool,
}

pub struct Taps {
    records: Vec<Record>,
    edits: Vec<EditHook>,
    sink: Option<Box<dyn Sink>>,
    /// Without a sink: the current call's values by requested name.
    values: HashMap<String, Tensor>,
    want_output: bool,
    call: Call,
    /// Every path visited in the current call, in order (the execution trace).
    visited: Vec<String>,
}

impl Default for Taps {
    /// No taps, no edits: the plain forward pass.
    fn default() -> Self {
        Taps::new(Vec::new(), true)
    }
}

impl Taps {
    /// Records `requests` at every call; `want_output`: the caller needs the model's final
    /// output (no early stop).
    pub fn new(requests: Vec<TapRequest>, want_output: bool) -> Taps {
        let mut t = Taps {
            records: Vec::new(),
            edits: Vec::new(),
            sink: None,
            values: HashMap::new(),
            want_output,
            call: Call::default(),
            visited: Vec::new(),
        };
        for r in requests {
            t.record(r, When::always());
        }
        t
    }

    /// A `Taps` recording `names`, each resolved to a module path by `resolve` (a model's
    /// `resolve_tap`); `want_output` false lets the pass stop after the last of them.
    pub fn resolve(names: &[&str], want_output: bool, resolve: impl Fn(&str) -> Result<TapRequest>) -> Result<Taps> {
        let requests = names.iter().map(|n| resolve(n)).collect::<Result<Vec<_>>>()?;
        Ok(Taps::new(requests, want_output))
    }

    /// Records `request` where `when` says.
    pub fn record(&mut self, request: TapRequest, when: When) {
        let pending = when.at_step(&self.call);
        self.records.push(Record { request, when, pending });
    }

    /// Sends recorded values to `sink` as they are produced instead of keeping them.
    pub fn stream_to(&mut self, sink: Box<dyn Sink>) {
        self.sink = Some(sink);
    }

    /// Replaces the output of module `path` with `edit(site, input, output)` where `when` says,
    /// for the rows it selects. Edits at one path apply in the order they were added.
    pub fn edit_when(&mut self, path: &str, when: When, edit: impl FnMut(&Site, &Tensor, &Tensor) -> Result<Tensor> + Send + 'static) {
        let pending = when.at_step(&self.call);
        self.edits.push(EditHook { path: path.to_string(), when, edit: Box::new(edit), pending });
    }

    /// Replaces the output of module `path` with `edit(input, output)` at every call, all rows.
    pub fn edit(&mut self, path: &str, mut edit: Edit) {
        self.edit_when(path, When::always(), move |_, input, output| edit(input, output));
    }

    /// Starts a call: the hooks that act in it become pending, the trace and (without a sink)
    /// the values of the last call are cleared.
    pub fn set_call(&mut self, call: Call) {
        for r in &mut self.records {
            r.pending = r.when.at_step(&call);
        }
        for e in &mut self.edits {
            e.pending = e.when.at_step(&call);
        }
        self.call = call;
        self.values.clear();
        self.visited.clear();
    }

    /// The current call.
    pub fn call(&self) -> &Call {
        &self.call
    }

    /// The requests, whatever their `When`.
    pub fn requests(&self) -> Vec<&TapRequest> {
        self.records.iter().map(|r| &r.request).collect()
    }

    /// Whether anything records or edits at `path` in this call (the model may then keep the
    /// input or build the value).
    pub fn wants(&self, path: &str) -> bool {
        self.edits.iter().any(|e| e.pending && e.path == path) || self.records.iter().any(|r| r.pending && r.request.path == path)
    }

    /// The end of module `path` in this call: records what is requested there (before any
    /// edit, so a tap sees what the model computed) and returns the output, edited where an
    /// edit acts. input, output: [B, ...].
    pub fn visit(&mut self, path: &str, input: &Tensor, output: Tensor) -> Result<Tensor> {
        self.visited.push(path.to_string());
        let b = output.dims().first().copied().unwrap_or(0);
        for r in self.records.iter_mut().filter(|r| r.pending && r.request.path == path) {
            r.pending = false;
            let rows = r.when.rows(&self.call, b, path)?;
            if rows.is_empty() {
                continue;
            }
            let v = if r.request.delta {
                if input.shape() != output.shape() {
                    return Err(Error::BadOption(format!(
                        "tap {}: `:delta` needs input and output of one shape, {path} maps {} to {}",
                        r.request.name,
                        input.shape(),
                        output.shape()
                    )));
                }
                ops::sub(&select_rows(&output, &rows)?, &select_rows(input, &rows)?)?
            } else {
                select_rows(&output, &rows)?
            };
            match self.sink.as_mut() {
                Some(sink) => sink.record(&Site { path, call: &self.call, rows: &rows }, &r.request, &v)?,
                None => {
                    self.values.insert(r.request.name.clone(), v);
                }
            }
        }
        let mut output = output;
        for e in self.edits.iter_mut().filter(|e| e.pending && e.path == path) {
            e.pending = false;
            let rows = e.when.rows(&self.call, b, path)?;
            if rows.is_empty() {
                continue;
            }
            let out_rows = select_rows(&output, &rows)?;
            let edited = (e.edit)(&Site { path, call: &self.call, rows: &rows }, &select_rows(input, &rows)?, &out_rows)?;
            if edited.shape() != out_rows.shape() {
                return Err(Error::BadInput(format!(
                    "edit at {path} returned shape {}, the module output (rows {rows:?}) is {}",
                    edited.shape(),
                    out_rows.shape()
                )));
            }
            output = replace_rows(&output, &rows, &edited)?;
        }
        Ok(output)
    }

    /// True when the pass can stop: everything of this call recorded, no edit of this call
    /// pending, output not wanted.
    pub fn done(&self) -> bool {
        !self.want_output && !self.edits.iter().any(|e| e.pending) && !self.records.iter().any(|r| r.pending)
    }

    /// The paths visited in this call, in execution order (what ran: an early stop shows here).
    pub fn visited(&self) -> &[String] {
        &self.visited
    }

    /// Requests of this call not reached (a path the model never visited is a bug or a bad name).
    pub fn missing(&self) -> Vec<&TapRequest> {
        self.records.iter().filter(|r| r.pending).map(|r| &r.request).collect()
    }

    /// The recorded values of this call by requested name (without a sink); errors if any
    /// request of this call was never reached.
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
