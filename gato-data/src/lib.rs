//! # gato-data
//!
//! Real agent data for gato-rs: the episode file format (`docs/episode-format.md`; safetensors with JSON
//! metadata, field names after the JAT dataset) and a reader that memory-maps a file, validates all of it, and
//! hands episodes to `gato-tokenizers`' [`SequenceBuilder`](gato_tokenizers::SequenceBuilder). Files are written by
//! the Python recorder in `tools/record/` (real simulators with expert policies). The paper trains on such
//! episodes (§3); it ships none, and neither do the other ports.
//!
//! Sits beside the tokenizers, never inside the model: depends on `gato-core` (traits only) and
//! `gato-tokenizers`.

#![warn(missing_docs)]

mod error;
pub mod format;
pub mod pipeline;
mod reader;
pub mod weights;

pub use error::{DataError, Result};
pub use format::{EpisodeMeta, FieldMeta, FieldModality, Role, FORMAT_NAME, FORMAT_VERSION};
pub use pipeline::{Dataset, Task};
pub use reader::{env_spec, EpisodeFile, Summary};
pub use weights::TaskWeights;
