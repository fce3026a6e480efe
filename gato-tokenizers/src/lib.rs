//! # gato-tokenizers
//!
//! Raw agent data → Gato token sequences and back (paper §2.1, App. B; design.md §2–§4). This crate depends on
//! `gato-core`'s traits and config only — never on ndarray, a backend, the model or CUDA — so a third party can
//! depend on it alone.
//!
//! - [`ContinuousValueTokenizer`]: mu-law, clipping, 1024 bins, decoding (design.md §3);
//! - [`DiscreteValueTokenizer`]: range-checked integers with the layout's offset;
//! - [`ImagePatchTokenizer`]: HWC images → normalised 16×16 patches in raster order;
//! - text: the [`gato_core::Tokenizer`] plugins [`ByteTokenizer`] (`bytes`) and, with the default `sentencepiece`
//!   feature, [`SentencePieceTokenizer`] (`sentencepiece`);
//! - [`SequenceBuilder`]: timesteps of named fields → one token sequence in the canonical order (design.md §4), windows
//!   of `L` tokens aligned to timesteps, prompt conditioning and action decoding.

#![warn(missing_docs)]
#![doc = include_str!("../README.md")]

mod builder;
mod bytes;
mod discrete;
mod error;
mod mu_law;
mod patches;
#[cfg(feature = "sentencepiece")]
mod sentencepiece;
mod sequence;
mod spec;
mod text;

pub use builder::SequenceBuilder;
pub use bytes::{ByteTokenizer, BYTES_TOKENIZER_NAME};
pub use discrete::DiscreteValueTokenizer;
pub use error::{Error, Result};
pub use mu_law::ContinuousValueTokenizer;
pub use patches::{reassemble, ImagePatchTokenizer, ImageRef, Padding, Patches, Pixels};
#[cfg(feature = "sentencepiece")]
pub use sentencepiece::{SentencePieceTokenizer, SENTENCEPIECE_TOKENIZER_NAME};
pub use sequence::{to_batch, Token, TokenSequence, Window};
pub use spec::{EnvSpec, FieldKind, FieldSpec, FieldValue, Image, ImagePixels, Timestep};
pub use text::text_tokenizer;

/// The config and token layout this crate tokenizes for, re-exported so `gato-tokenizers` is enough to build a
/// sequence.
pub use gato_core::{GatoConfig, TokenLayout, Tokenizer};
