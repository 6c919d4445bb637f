//! One error type for the whole crate. Each variant carries what a user needs to fix the input:
//! the op and its operands' shapes, the file and the tensor key, the option at fault. Errors gain
//! context on the way up (`.context(...)`), and the CLI prints the chain.

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
    /// The CUDA driver, NVRTC or cuBLAS reported an error, or is missing.
    Cuda(String),
    /// A kernel failed to compile, or its resource report breaks a rule (register spills).
    Kernel { module: String, msg: String },
    /// A user-facing option or config value is invalid or unsupported.
    Config(String),
    /// Anything else, with a message that says what and why.
    Msg(String),
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
            Error::Config(msg) => write!(f, "{msg}"),
            Error::Msg(msg) => write!(f, "{msg}"),
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

/// Returns early with an `Error::Msg` built like `format!`.
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::Error::Msg(format!($($arg)*)))
    };
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
