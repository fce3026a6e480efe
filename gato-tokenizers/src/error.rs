//! The one error type of `gato-tokenizers`. Messages name the field, the index, the value and the allowed range.

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while tokenizing or decoding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// NaN or ±Inf in a continuous field (design.md §3: never a silent token).
    #[error(
        "field `{field}`: value at index {index} is {value}; continuous values must be finite"
    )]
    NonFinite {
        /// Field name.
        field: String,
        /// Flat index in the field.
        index: usize,
        /// The value.
        value: f64,
    },

    /// A value or token outside its allowed range.
    #[error("field `{field}`: {what} at index {index} is {value}, allowed {allowed}")]
    OutOfRange {
        /// Field name.
        field: String,
        /// `value` or `token`.
        what: &'static str,
        /// Flat index in the field.
        index: usize,
        /// The value.
        value: String,
        /// The allowed range.
        allowed: String,
    },

    /// Data whose size or shape does not match what it claims or what the spec requires.
    #[error("field `{field}`: {detail}")]
    Shape {
        /// Field name.
        field: String,
        /// What does not match.
        detail: String,
    },

    /// A field the spec names is missing from a timestep, or present with the wrong modality.
    #[error("timestep {timestep}: {detail}")]
    Field {
        /// Timestep index in the episode.
        timestep: usize,
        /// What is missing or wrong.
        detail: String,
    },

    /// A timestep with more tokens than a window can hold, or more observation tokens than local positions.
    #[error("timestep {timestep} has {tokens} tokens, more than {limit} ({what})")]
    TooLong {
        /// Timestep index.
        timestep: usize,
        /// Its token count.
        tokens: usize,
        /// The limit.
        limit: usize,
        /// Which limit.
        what: &'static str,
    },

    /// A config or layout problem, or a text tokenizer error, from gato-core.
    #[error(transparent)]
    Core(#[from] gato_core::Error),
}
