//! The one error type of `gato-agent`.

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while acting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// From the model or a backend.
    #[error(transparent)]
    Core(#[from] gato_core::Error),
    /// From tokenizing an observation or decoding an action.
    #[error(transparent)]
    Tokenize(#[from] gato_tokenizers::Error),
    /// From an environment.
    #[error("environment `{env}`: {detail}")]
    Environment {
        /// The environment's name.
        env: String,
        /// What went wrong.
        detail: String,
    },
}
