//! The CLI's error: whatever a library returned, or a problem with the command line's own inputs.

use std::path::PathBuf;

/// Result alias of the CLI.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

/// Errors printed by `gato` as `error: …` with exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// From gato-core (config, backends, registries).
    #[error(transparent)]
    Core(#[from] gato_core::Error),
    /// From gato-tokenizers.
    #[error(transparent)]
    Tokenize(#[from] gato_tokenizers::Error),
    /// From gato-agent (acting).
    #[error(transparent)]
    Agent(#[from] gato_agent::Error),
    /// From gato-train (a training run).
    #[error(transparent)]
    Train(#[from] gato_train::TrainError),
    /// From gato-data (episode files).
    #[error(transparent)]
    Data(#[from] gato_data::DataError),
    /// A command-line value that could not be parsed.
    #[error("--{flag}: {detail}")]
    Argument {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Some of several input files could not be read (the others were processed).
    #[error("{failed} of {total} files could not be read: {detail}")]
    Files {
        /// Files that failed.
        failed: usize,
        /// Files given.
        total: usize,
        /// Each failure, naming its file.
        detail: String,
    },
    /// The command was interrupted by a signal after saving its work (exit status 130).
    #[error("{0}")]
    Interrupted(String),
    /// An unreadable or undecodable image file.
    #[error("cannot read image {path}: {reason}")]
    Image {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}
