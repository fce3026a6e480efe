//! # gato-tokenizers
//!
//! Raw agent data → Gato token sequences and back (paper §2.1, App. B; SPEC §2–§4). This crate depends on
//! `gato-core`'s traits and config only — never on ndarray, a backend, the model or CUDA — so a third party can
//! depend on it alone.
//!
//! Present today: the dependency-free byte-level text tokenizer ([`ByteTokenizer`], registered as `bytes`).
//! The continuous, discrete and image tokenizers and the sequence builder arrive with the tokenizers issue.

#![warn(missing_docs)]

mod bytes;

pub use bytes::ByteTokenizer;
