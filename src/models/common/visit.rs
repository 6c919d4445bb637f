//! The visitor: every module of a model ends with `visit`, which records what the taps ask for
//! at its path, applies an edit set there, and stops the pass once every requested value is
//! recorded and the caller does not want the output; `step!` carries that stop up the call tree.

use crate::models::taps::Taps;
use crate::tensor::Tensor;
use crate::Result;

/// Unwraps a module's `Result<Option<T>>`, returning `Ok(None)` from the enclosing function when
/// the pass stopped early.
macro_rules! step {
    ($e:expr) => {
        match $e? {
            Some(v) => v,
            None => return Ok(None),
        }
    };
}
pub(crate) use step;

/// The end of the module at `path`: records what the taps ask for there and returns the output
/// (edited if an edit is set there), or None when every requested value is recorded and the
/// caller does not want the model's output.
pub(crate) fn visit(taps: &mut Taps, path: &str, input: &Tensor, output: Tensor) -> Result<Option<Tensor>> {
    let out = taps.visit(path, input, output)?;
    Ok(if taps.done() { None } else { Some(out) })
}
