//! # gato-embed
//!
//! The four contributions to Gato's input embedding (paper §2.2, App. C.2–C.3; SPEC §5), each an
//! [`gato_core::Embedding`] over `&dyn Backend`: `DiscreteEmbedding` (the shared table), `ResidualEmbedding` (the
//! ResNet v2 patch embedding), `PatchPositionEncoding` and `LocalPositionEncoding`.
//!
//! This crate fixes its place in the dependency graph (it depends on `gato-core` only and never names a concrete
//! backend); the embeddings themselves land with the model issue.

#![warn(missing_docs)]

pub use gato_core::{Embedding, EmbeddingMode, TokenBatch};
