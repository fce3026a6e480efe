//! The one error type of `gato-data`: every message names the file, and where it applies the episode and field.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// What can go wrong reading an episode file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file cannot be opened or mapped.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid safetensors file, or its metadata is missing, malformed or of another version.
    #[error("{file}: {detail}")]
    Format {
        /// The file.
        file: String,
        /// What is wrong.
        detail: String,
    },
    /// A tensor or value of one field of one episode is missing, mis-shaped or out of range.
    #[error("{file}: episode {episode}, field `{field}`: {detail}")]
    Field {
        /// The file.
        file: String,
        /// Episode index.
        episode: usize,
        /// Field name.
        field: String,
        /// What is wrong.
        detail: String,
    },
    /// An episode index past the end.
    #[error("{file}: episode {episode} requested, the file holds {count}")]
    NoSuchEpisode {
        /// The file.
        file: String,
        /// Requested index.
        episode: usize,
        /// Episodes in the file.
        count: usize,
    },
    /// Tokenizing an episode failed.
    #[error("{file}: episode {episode}: {source}")]
    Tokenize {
        /// The file.
        file: String,
        /// Episode index.
        episode: usize,
        /// The tokenizer error (names the field and index), boxed to keep `Result`s small.
        source: Box<gato_tokenizers::Error>,
    },
    /// A task-mixing specification that cannot be applied (`--task-weights`).
    #[error("task weights `{spec}`: {detail}")]
    Weights {
        /// The specification, as given.
        spec: String,
        /// What is wrong, naming the task or value and what is allowed.
        detail: String,
    },
}
