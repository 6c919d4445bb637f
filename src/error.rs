//! One error type for the whole crate. The variant is the kind of failure, what a caller acts on:
//! an op's operands (`Op`), a file that cannot be read or written (`Io`) or whose content is
//! wrong (`Format`), other bad input data (`BadInput`), a bad option or setting (`BadOption`),
//! a valid model structure revelio does not implement (`Unsupported`), the device (`Cuda`,
//! `Kernel`), or revelio's own invariant (`Internal`). Each carries what a user needs to fix
//! it: the op and its operands' shapes, the file and the tensor key, the option at fault. Errors
//! gain context on the way up (`.context(...)`), and the CLI prints the chain.

use std::fmt;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum Error {
    /// An op was given operands it cannot take: shape, dtype or device mismatch, an index out of
    /// range. `msg` names the operands and their shapes.
    Op { op: &'static str, msg: String },
    /// A file could not be read or written.
    Io { path: PathBuf, source: std::io::Error },
    /// A file was read but its content is not what was expected (safetensors header, JSON config,
    /// a missing tensor, a tensor of the wrong shape).
    Format { path: PathBuf, msg: String },
    /// The device failed: the CUDA driver, NVRTC or cuBLAS reported an error, or is missing.
    Cuda(String),
    /// A kernel failed to compile, or its resource report breaks a rule (register spills).
    Kernel { module: String, msg: String },
    /// Input data is not what the command needs, where no single file's format is at fault: a
    /// dataset without images, features of the wrong width, a store of another run's parts.
    BadInput(String),
    /// A command-line option or setting is invalid, out of range, or at odds with the input
    /// (`--dtype f16` on the CPU, an unknown tap name, a folder that holds another run).
    BadOption(String),
    /// A model structure or config value that diffusers or transformers accept and revelio does
    /// not implement (a block type, an activation, a head dim the kernels do not take).
    Unsupported(String),
    /// Not the input's fault: an invariant of revelio's own code broke (a bug), or the machine
    /// refused a resource such as a thread.
    Internal(String),
    /// An error with a line of context added by a caller.
    Context { context: String, source: Box<Error> },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Op { op, msg } => write!(f, "{op}: {msg}"),
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Format { path, msg } => write!(f, "{}: {msg}", path.display()),
            Error::Cuda(msg) => write!(f, "cuda: {msg}"),
            Error::Kernel { module, msg } => write!(f, "kernel module {module}: {msg}"),
            Error::BadInput(msg) | Error::BadOption(msg) | Error::Unsupported(msg) | Error::Internal(msg) => write!(f, "{msg}"),
            Error::Context { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Context { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

impl From<cudarc::driver::DriverError> for Error {
    fn from(e: cudarc::driver::DriverError) -> Self {
        Error::Cuda(format!("driver: {e}"))
    }
}

impl Error {
    /// An `Op` error; the usual way ops reject operands.
    pub fn op(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Op { op, msg: msg.into() }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format { path: path.into(), msg: msg.into() }
    }

    /// The error beneath any lines of context: the kind a caller acts on.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            e => e,
        }
    }
}

/// Adds a line of context to an error as it rises.
pub trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for Result<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::Context { context: context.into(), source: Box::new(e) })
    }

    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::Context { context: f().into(), source: Box::new(e) })
    }
}

/// Returns early with an `Error::Op` for op `$op` unless `$cond` holds.
#[macro_export]
macro_rules! ensure_op {
    ($cond:expr, $op:expr, $($arg:tt)*) => {
        if !$cond {
            return Err($crate::Error::op($op, format!($($arg)*)));
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_print_their_message_and_context_keeps_the_kind() {
        for e in [Error::BadInput("m".into()), Error::BadOption("m".into()), Error::Unsupported("m".into()), Error::Internal("m".into())] {
            assert_eq!(e.to_string(), "m");
        }
        let e: Result<()> = Err(Error::BadOption("--k 0 must be positive".into()));
        let e = e.context("sae train").context("demo").unwrap_err();
        assert_eq!(e.to_string(), "demo: sae train: --k 0 must be positive");
        assert!(matches!(e.root(), Error::BadOption(m) if m == "--k 0 must be positive"));
    }
}
