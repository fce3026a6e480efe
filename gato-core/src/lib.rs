//! # gato-core
//!
//! The shared vocabulary of gato-rs, an implementation of Gato ("A Generalist Agent", Reed et al., 2022,
//! arXiv 2205.06175):
//!
//! - [`GatoConfig`] with the paper's presets (App. C.1) and every open choice of `docs/design.md` as a field;
//! - [`TokenLayout`], the token space of §2.1 computed in one place;
//! - the three traits the project is written against: [`Tokenizer`], [`Embedding`] and the object-safe
//!   [`Backend`] (one supertrait per op family, see [`backend`]), with [`Tensor`] handles;
//! - plugin registries ([`BackendEntry`], [`TokenizerEntry`]) filled at link time through `inventory`;
//! - the f64 reference ops ([`mod@reference`]) and, with the `testing` feature, the backend conformance suite
//!   ([`testing`]) every backend runs unchanged.
//!
//! No backend lives here: the CPU backend is `gato-cpu`, the CUDA backend `gato-cuda`, each registering itself by
//! name. This crate's dependency tree holds no ndarray, GEMM, rayon or CUDA crate, so tokenizer and data crates
//! (and third-party plugins) build on it cheaply. Design choices are cited as `docs/design.md` §N.

#![warn(missing_docs)]

pub mod backend;
pub mod config;
pub mod diagnostics;
pub mod dtype;
pub mod embedding;
pub mod error;
pub mod layout;
pub mod memory;
pub mod ops;
pub mod panics;
pub mod param_source;
pub mod reference;
pub mod registry;
pub mod shape;
pub mod tensor;
pub mod tokenizer;

#[cfg(feature = "testing")]
pub mod testing;

pub use backend::{
    clip_scale, run_scoped, AdamWConstants, AdamWStep, AdamWTensor, AttentionOps, AttentionSpec,
    Backend, BinaryOp, ClippedStep, CollectiveOps, Communicator, Conv2dSpec, ElementwiseOps,
    GatherConvOps, LayoutOps, MatmulOps, MatmulPrecision, MatmulSpec, MemoryOps, NormOps, OptimOps,
    UnaryOp,
};
pub use config::{ActionLocalPosition, Activation, GatoConfig, TrainingConfig, PRESET_NAMES};
pub use dtype::{DType, HostData, HostSlice};
pub use embedding::{Embedding, EmbeddingMode, Modality, PatchPosition, TokenBatch};
pub use error::{Error, Result};
pub use layout::TokenLayout;
pub use ops::PAD_ID;
pub use param_source::{Init, ParamSource};
pub use registry::{
    backend_entry, backends, create_backend, create_tokenizer, tokenizer_entry, tokenizers,
    BackendEntry, BackendOptions, TokenizerEntry, TokenizerOptions,
};
pub use shape::Shape;
pub use tensor::{Storage, Tensor};
pub use tokenizer::Tokenizer;

/// The backend traits, for code that calls ops on a concrete backend type (methods of every family are callable on
/// a `&dyn Backend` without it): `use gato_core::prelude::*;`.
pub mod prelude {
    pub use crate::backend::{
        AttentionOps, Backend, CollectiveOps, ElementwiseOps, GatherConvOps, LayoutOps, MatmulOps,
        MemoryOps, NormOps, OptimOps,
    };
}

/// Re-exported so plugin crates use the same `inventory` version as the registries.
pub use inventory;
