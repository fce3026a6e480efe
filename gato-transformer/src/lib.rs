//! # gato-transformer
//!
//! The model as a whole (paper §2.2, App. C.1; SPEC §6–§7): the causal pre-LayerNorm decoder `GatoTransformer`,
//! the KV cache, the masked cross-entropy loss, the action sampler and checkpoints — written once against
//! `&dyn Backend`.
//!
//! This crate fixes its place in the dependency graph (`gato-embed` → `gato-core`); the decoder lands with the
//! model issue.

#![warn(missing_docs)]

pub use gato_core::{count_parameters, GatoConfig, ParameterCount};
