//! The one error type of `gato-core`.
//!
//! Every message names the field (or tensor), the value that was given and the rule it broke, so a user
//! can fix the input without reading the source. Errors travel with `?` up to the CLI, which prints them
//! without a backtrace.

use std::path::PathBuf;

/// Result alias used throughout gato-core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in gato-core: configuration, tensors, backends and registries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration field holds a value outside its allowed range.
    #[error("invalid config: field `{field}` = {value}: {rule}")]
    InvalidConfig {
        /// Dotted path of the field, e.g. `embedding.group_norm_groups`.
        field: String,
        /// The offending value, rendered for humans.
        value: String,
        /// The rule the value broke, e.g. "must be at least 1".
        rule: String,
    },

    /// A configuration file could not be read or parsed.
    #[error("cannot load config {path}: {reason}")]
    ConfigFile {
        /// The file that was read.
        path: PathBuf,
        /// What went wrong (I/O error or JSON error with line/column).
        reason: String,
    },

    /// A file could not be written.
    #[error("cannot write {path}: {reason}")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Why (the directory is missing, permission denied, ...).
        reason: String,
    },

    /// A preset name that is not one of the known presets and not an existing file.
    #[error("unknown config `{name}`: expected one of {expected} or a path to a config.json")]
    UnknownPreset {
        /// The name given.
        name: String,
        /// The preset names that exist.
        expected: String,
    },

    /// A tensor argument has the wrong shape for an operation.
    #[error("shape mismatch in `{op}`: {detail}")]
    Shape {
        /// The operation (or API) that rejected the shape.
        op: &'static str,
        /// Which argument, what shape it had and what was required.
        detail: String,
    },

    /// A tensor has a dtype the operation or backend does not support.
    #[error("unsupported dtype in `{op}`: {detail}")]
    DType {
        /// The operation that rejected the dtype.
        op: &'static str,
        /// Which argument, which dtype and which ones are accepted.
        detail: String,
    },

    /// An index (token id, slice bound, axis) is outside its allowed range.
    #[error("out of range in `{op}`: {what} = {value}, allowed {allowed}")]
    OutOfRange {
        /// The operation or API.
        op: &'static str,
        /// What the index is, e.g. `ids[17]` or `axis`.
        what: String,
        /// The offending value.
        value: String,
        /// The allowed range, e.g. `[0, 33025)`.
        allowed: String,
    },

    /// A non-finite value (NaN or ±Inf) where only finite values are allowed.
    #[error("non-finite value in `{field}` at index {index}: {value}")]
    NonFinite {
        /// The field or tensor.
        field: String,
        /// Flat index of the value.
        index: usize,
        /// The value (NaN, inf or -inf).
        value: f64,
    },

    /// An argument that is invalid for a reason other than shape, dtype or range.
    #[error("invalid argument to `{op}`: {detail}")]
    InvalidArgument {
        /// The operation or API.
        op: &'static str,
        /// What is wrong.
        detail: String,
    },

    /// A tensor created by one backend was passed to another backend.
    #[error(
        "tensor belongs to backend `{found}` but was passed to backend `{expected}` in `{op}`"
    )]
    BackendMismatch {
        /// The operation.
        op: &'static str,
        /// The backend that was called.
        expected: String,
        /// The backend that owns the tensor.
        found: String,
    },

    /// No backend or tokenizer is registered under the requested name.
    #[error("unknown {kind} `{name}`; registered {kind}s: {available}")]
    UnknownPlugin {
        /// `backend` or `tokenizer`.
        kind: &'static str,
        /// The requested name.
        name: String,
        /// Comma-separated registered names.
        available: String,
    },

    /// Allocating something would need more memory than the machine has available.
    #[error(
        "not enough memory for {what}: it needs {} and {} is available",
        crate::memory::human_bytes(*.needed),
        crate::memory::human_bytes(*.available)
    )]
    InsufficientMemory {
        /// What would be allocated, e.g. "the model's f32 parameters (95,315,584)".
        what: String,
        /// Bytes it needs.
        needed: u64,
        /// Bytes available.
        available: u64,
    },

    /// A backend is registered but cannot be used on this machine (e.g. no GPU).
    #[error("{display} backend unavailable: {reason}")]
    BackendUnavailable {
        /// Registered name, e.g. `cuda`.
        name: String,
        /// Name as shown to users, e.g. `CUDA`.
        display: String,
        /// Why, e.g. "no CUDA driver found (libcuda.so.1: cannot open shared object file)".
        reason: String,
    },

    /// A backend failed while running an operation (driver error, out of memory, ...).
    #[error("backend `{backend}` failed in `{op}`: {detail}")]
    Backend {
        /// The backend name.
        backend: String,
        /// The operation.
        op: &'static str,
        /// The underlying error.
        detail: String,
    },

    /// An operation the backend does not implement (yet).
    #[error("backend `{backend}` does not implement `{op}`")]
    Unsupported {
        /// The backend name.
        backend: String,
        /// The operation.
        op: &'static str,
    },

    /// A checkpoint that does not match its config: every problem at once (missing, unexpected, mis-shaped or
    /// mistyped tensors), or a file that cannot be read.
    #[error("checkpoint {path}: {}", problems.join("; "))]
    Checkpoint {
        /// The checkpoint file or directory.
        path: PathBuf,
        /// Each problem, naming the tensor, what it is and what was expected.
        problems: Vec<String>,
    },

    /// A tokenizer failed (bad model file, id outside its vocabulary, ...).
    #[error("tokenizer `{name}`: {detail}")]
    Tokenizer {
        /// Tokenizer name.
        name: String,
        /// What went wrong.
        detail: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Shape`].
    pub fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Shape {
            op,
            detail: detail.into(),
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(op: &'static str, detail: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            detail: detail.into(),
        }
    }

    /// Shorthand for [`Error::InvalidConfig`].
    pub fn config(field: impl Into<String>, value: impl ToString, rule: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field: field.into(),
            value: value.to_string(),
            rule: rule.into(),
        }
    }
}
