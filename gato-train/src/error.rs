//! The error of a training run: from the model and backend (`gato_core::Error`), from the data
//! (`gato_data::DataError`), or a run that stopped because its numbers did.

use std::path::PathBuf;

/// Result alias of a training run.
pub type RunResult<T, E = TrainError> = std::result::Result<T, E>;

/// Why a training run stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// From the model, the backend or a checkpoint.
    #[error(transparent)]
    Core(#[from] gato_core::Error),
    /// From the episode files.
    #[error(transparent)]
    Data(#[from] gato_data::DataError),
    /// A non-finite loss or gradient; the parameters were not updated, and the last good checkpoint (if one was
    /// written) is named.
    #[error("training stopped at step {step}: {detail}; {}", match last_checkpoint {
        Some(p) => format!("the last good checkpoint is {}", p.display()),
        None => "no checkpoint was written before it".to_string(),
    })]
    Diverged {
        /// The step whose loss or gradient was not finite (0-based).
        step: usize,
        /// Which value, where.
        detail: String,
        /// The newest checkpoint written before it.
        last_checkpoint: Option<PathBuf>,
    },
    /// A run's options or a checkpoint that cannot continue with them.
    #[error("{field}: {detail}")]
    Options {
        /// The option or file.
        field: String,
        /// What is wrong, with the value and what is allowed.
        detail: String,
    },
}
