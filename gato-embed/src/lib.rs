//! # gato-embed
//!
//! The input embedding of Gato (paper §2.2, App. C.2–C.3; design.md §5): a **sum of contributions**, each an
//! [`gato_core::Embedding`] over `&dyn Backend` that is zero where it does not apply —
//! [`DiscreteEmbedding`] (the shared table for text, discrete, continuous and separator tokens),
//! [`ResidualEmbedding`] (the ResNet v2 patch embedding), [`PatchPositionEncoding`] (128 row/column buckets) and
//! [`LocalPositionEncoding`] (position among a timestep's observation tokens). [`InputEmbedding`] adds them up.
//! Parameters come from a [`gato_core::ParamSource`]: [`RandomInit`] for a fresh model, a checkpoint loader
//! otherwise.

#![warn(missing_docs)]

mod buckets;
mod discrete;
mod gather;
mod init;
mod input;
mod local_position;
mod patch_position;
mod residual;

pub use buckets::{bucket_range, eval_bucket};
pub use discrete::{DiscreteEmbedding, TOKENS_PARAM};
pub use gather::PositionRows;
pub use gato_core::{Embedding, EmbeddingMode, TokenBatch};
pub use init::{truncated_normal, RandomInit};
pub use input::InputEmbedding;
pub use local_position::{LocalPositionEncoding, LOCAL_POSITION_PARAM};
pub use patch_position::{PatchPositionEncoding, PATCH_COL_PARAM, PATCH_ROW_PARAM};
pub use residual::ResidualEmbedding;
