//! Choosing a text tokenizer by registered name or by model file.

use std::path::Path;

use gato_core::registry::TokenizerOptions;
use gato_core::Tokenizer;

use crate::error::{Error, Result};

/// A text tokenizer from a registered name (`bytes`, `sentencepiece`, a plugin's name) or from a path to a model
/// file (`*.model` → `sentencepiece`). An unknown name lists the registered ones.
pub fn text_tokenizer(name_or_path: &str) -> Result<Box<dyn Tokenizer>> {
    if gato_core::tokenizer_entry(name_or_path).is_ok() {
        return Ok(gato_core::create_tokenizer(
            name_or_path,
            &TokenizerOptions::default(),
        )?);
    }
    let path = Path::new(name_or_path);
    if path.is_file() {
        let by_extension = match path.extension().and_then(|e| e.to_str()) {
            Some("model") | Some("v1") | Some("v2") | Some("v3") | Some("spm") => "sentencepiece",
            _ => {
                return Err(Error::Core(gato_core::Error::Tokenizer {
                    name: name_or_path.into(),
                    detail: "cannot tell the tokenizer from the file name; SentencePiece models end in .model".into(),
                }))
            }
        };
        let options = TokenizerOptions {
            model_path: Some(path.to_path_buf()),
        };
        return Ok(gato_core::create_tokenizer(by_extension, &options)?);
    }
    // Something that names a file (a directory part or a model file's extension) is reported as a file problem.
    let looks_like_a_path = name_or_path.contains(std::path::MAIN_SEPARATOR)
        || name_or_path.contains('/')
        || matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("model" | "v1" | "v2" | "v3" | "spm" | "json")
        );
    if looks_like_a_path {
        let detail = if path.is_dir() {
            "is a directory; expected a tokenizer model file (e.g. a SentencePiece .model)"
                .to_string()
        } else if path.exists() {
            "cannot be read as a file".to_string()
        } else {
            "file not found".to_string()
        };
        return Err(Error::Core(gato_core::Error::Tokenizer {
            name: name_or_path.into(),
            detail,
        }));
    }
    // Neither: report the registry's error, which lists every registered name.
    Err(gato_core::tokenizer_entry(name_or_path)
        .err()
        .map(Error::Core)
        .unwrap_or_else(|| {
            Error::Core(gato_core::Error::invalid(
                "text_tokenizer",
                format!("`{name_or_path}` not found"),
            ))
        }))
}
