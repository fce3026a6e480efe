//! # gato-core
//!
//! The shared vocabulary of gato-rs, an implementation of Gato ("A Generalist Agent", Reed et al., 2022,
//! arXiv 2205.06175):
//!
//! - [`GatoConfig`] with the paper's presets (App. C.1) and every open choice of `SPEC.md` as a field;
//! - [`TokenLayout`], the token space of §2.1 computed in one place;
//! - parameter counting per component ([`count_parameters`]);
//! - the three traits the project is written against: [`Tokenizer`], [`Embedding`] and the object-safe
//!   [`Backend`], with [`Tensor`] handles;
//! - plugin registries ([`BackendEntry`], [`TokenizerEntry`]) filled at link time through `inventory`;
//! - the CPU backend ([`cpu::CpuBackend`], registered as `cpu`) behind the default `cpu` feature — crates that need
//!   only the traits (such as `gato-tokenizers`) depend on `gato-core` with `default-features = false` and pull in
//!   neither ndarray, nor the GEMM, nor rayon;
//! - with the `testing` feature, the backend conformance suite ([`testing`]) every backend runs unchanged.

#![warn(missing_docs)]

pub mod backend;
pub mod config;
pub mod diagnostics;
pub mod dtype;
pub mod embedding;
pub mod error;
pub mod layout;
pub mod ops;
pub mod param_source;
pub mod params;
pub mod reference;
pub mod registry;
pub mod shape;
pub mod tensor;
pub mod tokenizer;

#[cfg(feature = "cpu")]
pub mod cpu;

#[cfg(feature = "testing")]
pub mod testing;

pub use backend::{
    run_scoped, AttentionSpec, Backend, BinaryOp, Conv2dSpec, MatmulPrecision, MatmulSpec, UnaryOp,
};
pub use config::{ActionLocalPosition, Activation, GatoConfig, TrainingConfig, PRESET_NAMES};
pub use dtype::{DType, HostData, HostSlice};
pub use embedding::{
    bucket_range, eval_bucket, Embedding, EmbeddingMode, Modality, PatchPosition, TokenBatch,
};
pub use error::{Error, Result};
pub use layout::TokenLayout;
pub use ops::PAD_ID;
pub use param_source::{Init, ParamSource};
pub use params::{count_parameters, paper_parameter_count, ComponentParams, ParameterCount};
pub use registry::{
    backend_entry, backends, create_backend, create_tokenizer, tokenizer_entry, tokenizers,
    BackendEntry, BackendOptions, TokenizerEntry, TokenizerOptions,
};
pub use shape::Shape;
pub use tensor::{Storage, Tensor};
pub use tokenizer::Tokenizer;

/// Re-exported so plugin crates use the same `inventory` version as the registries.
pub use inventory;
