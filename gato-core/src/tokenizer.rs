//! The `Tokenizer` trait: text ↔ token ids, the plugin interface for text (design.md §3 "Text", paper §2.1).
//!
//! Continuous, discrete and image tokenization follow fixed formulas and live as concrete types in
//! `gato-tokenizers`; text tokenization is the part users swap (SentencePiece, `tokenizer.json`, bytes, their own),
//! so it is a trait with registered implementations ([`crate::registry::TokenizerEntry`]).

use std::fmt;

use crate::error::Result;

/// A text tokenizer whose ids lie in `[0, vocab_size())`, which must fit the text block of the `TokenLayout`.
pub trait Tokenizer: Send + Sync + fmt::Debug {
    /// The registered name.
    fn name(&self) -> &str;

    /// Number of ids this tokenizer can produce; every id is below it.
    fn vocab_size(&self) -> usize;

    /// Text → ids. Fails only for text the tokenizer cannot represent.
    fn encode(&self, text: &str) -> Result<Vec<u32>>;

    /// Ids → text. An id outside `[0, vocab_size())` is an error naming it.
    fn decode(&self, ids: &[u32]) -> Result<String>;
}
