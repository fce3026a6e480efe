//! # gato-transformer
//!
//! The model as a whole (paper §2.2, App. C.1; design.md §6–§7), written once against `&dyn Backend`:
//! [`GatoTransformer`] (input embedding → causal pre-LayerNorm decoder blocks → final LayerNorm → tied logits),
//! [`masked_cross_entropy`] (§2.3), the KV cache with a sliding window ([`DecodeState`]), the action sampler
//! ([`ActionSampler`]) and checkpoints ([`checkpoint`]).

#![warn(missing_docs)]

pub mod atomic_dir;
pub mod attention;
pub mod block;
pub mod checkpoint;
pub mod decode;
pub mod dropout;
pub mod feed_forward;
pub mod gradients;
pub mod kv_cache;
pub mod layers;
pub mod model;
pub mod sampler;
pub mod shapes;

pub use decode::{last_logits, last_logits_in, last_logits_in_into, DecodeState, WindowPolicy};
pub use dropout::Dropout;
pub use gato_core::GatoConfig;
pub use gradients::Gradients;
pub use model::{masked_cross_entropy, single_token, GatoTransformer, LossReport, TargetScore};
pub use sampler::{ActionSampler, Sampling};
pub use shapes::{
    block_params, count_parameters, paper_parameter_count, parameter_bytes, BlockShapes,
    ComponentParams, ParameterCount,
};
