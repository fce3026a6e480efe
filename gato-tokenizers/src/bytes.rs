//! The byte-level text tokenizer: one token per UTF-8 byte, ids `[0, 256)` (design.md §3 "Text": the dependency-free
//! fallback). Lossless for any string; needs no model file.

use gato_core::registry::{TokenizerEntry, TokenizerOptions};
use gato_core::{Error, Result, Tokenizer};

/// Text as its UTF-8 bytes; id = byte value.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByteTokenizer;

/// Registered name of [`ByteTokenizer`].
pub const BYTES_TOKENIZER_NAME: &str = "bytes";

impl Tokenizer for ByteTokenizer {
    fn name(&self) -> &str {
        BYTES_TOKENIZER_NAME
    }

    fn vocab_size(&self) -> usize {
        256
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(text.bytes().map(u32::from).collect())
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        let bytes = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                u8::try_from(id).map_err(|_| Error::OutOfRange {
                    op: "ByteTokenizer::decode",
                    what: format!("ids[{i}]"),
                    value: id.to_string(),
                    allowed: "[0, 256)".into(),
                })
            })
            .collect::<Result<Vec<u8>>>()?;
        String::from_utf8(bytes).map_err(|e| Error::Tokenizer {
            name: BYTES_TOKENIZER_NAME.into(),
            detail: format!("ids are not valid UTF-8: {e}"),
        })
    }
}

fn create(options: &TokenizerOptions) -> Result<Box<dyn Tokenizer>> {
    if let Some(p) = &options.model_path {
        return Err(Error::Tokenizer {
            name: BYTES_TOKENIZER_NAME.into(),
            detail: format!("takes no model file, got {}", p.display()),
        });
    }
    Ok(Box::new(ByteTokenizer))
}

inventory::submit! {
    TokenizerEntry {
        name: BYTES_TOKENIZER_NAME,
        description: "UTF-8 bytes, ids [0, 256); needs no model file",
        create,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip_any_string(s in ".*") {
            let t = ByteTokenizer;
            let ids = t.encode(&s).unwrap();
            prop_assert!(ids.iter().all(|&i| i < 256));
            prop_assert_eq!(t.decode(&ids).unwrap(), s);
        }

        #[test]
        fn decode_never_panics(ids in prop::collection::vec(any::<u32>(), 0..64)) {
            let _ = ByteTokenizer.decode(&ids);
        }
    }

    #[test]
    fn registered_by_name() {
        let t = gato_core::create_tokenizer("bytes", &TokenizerOptions::default()).unwrap();
        assert_eq!(t.encode("hé").unwrap(), vec![104, 195, 169]);
    }

    #[test]
    fn out_of_range_id_is_named() {
        let msg = ByteTokenizer.decode(&[104, 300]).unwrap_err().to_string();
        assert!(
            msg.contains("ids[1]") && msg.contains("300") && msg.contains("[0, 256)"),
            "{msg}"
        );
    }
}
