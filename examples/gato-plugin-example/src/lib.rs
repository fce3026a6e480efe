//! An example third-party plugin for gato-rs: a text tokenizer registered as `codepoints`.
//!
//! One id per Unicode scalar value, for text whose characters all lie below U+7D00 (32000, the size of Gato's text
//! block): Latin, Greek, Cyrillic, Hebrew, Arabic, Devanagari, Thai, kana and most CJK ideographs fit. Anything
//! else is an error naming the character — a plugin follows the same rule as the built-in tokenizers.
//!
//! Registering is one `inventory::submit!`; a binary that links this crate (see `src/bin/gato-with-plugin.rs`)
//! can select the tokenizer by name, e.g. `gato-with-plugin tokenize --text "héllo" --text-tokenizer codepoints`.

use gato_core::registry::{TokenizerEntry, TokenizerOptions};
use gato_core::{Error, Result, Tokenizer};

/// Registered name.
pub const NAME: &str = "codepoints";

/// Unicode scalar values below 32000 as ids.
#[derive(Debug, Default, Clone, Copy)]
pub struct CodepointTokenizer;

impl Tokenizer for CodepointTokenizer {
    fn name(&self) -> &str {
        NAME
    }

    fn vocab_size(&self) -> usize {
        32000
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        text.chars()
            .enumerate()
            .map(|(i, c)| {
                let id = c as u32;
                if id < 32000 {
                    Ok(id)
                } else {
                    Err(Error::Tokenizer {
                        name: NAME.into(),
                        detail: format!(
                            "character {i} ({c:?}, U+{id:04X}) is outside [U+0000, U+7D00)"
                        ),
                    })
                }
            })
            .collect()
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        ids.iter()
            .enumerate()
            .map(|(i, &id)| {
                char::from_u32(id)
                    .filter(|_| id < 32000)
                    .ok_or_else(|| Error::OutOfRange {
                        op: "CodepointTokenizer::decode",
                        what: format!("ids[{i}]"),
                        value: id.to_string(),
                        allowed: "[0, 32000) excluding surrogates".into(),
                    })
            })
            .collect()
    }
}

fn create(_options: &TokenizerOptions) -> Result<Box<dyn Tokenizer>> {
    Ok(Box::new(CodepointTokenizer))
}

inventory::submit! {
    TokenizerEntry {
        name: NAME,
        description: "example plugin: one id per Unicode scalar value below U+7D00",
        create,
    }
}
