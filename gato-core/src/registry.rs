//! Plugin registries: backends and tokenizers register themselves by name through `inventory`.
//!
//! A crate registers an entry with `inventory::submit!`; the entry only exists in a binary that links the crate, and
//! Rust drops crates that are dependencies but never named. Binaries and tests that expect a plugin therefore name it
//! (`use gato_cuda as _;`) and assert it is registered — see `gato-cli`.

use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// Options passed to a backend constructor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendOptions {
    /// Worker threads (CPU); `None` = all cores.
    pub threads: Option<usize>,
    /// Device ordinal (GPU).
    pub device: usize,
}

/// A registered backend.
pub struct BackendEntry {
    /// Name users select with `--backend`, e.g. `cpu`, `cuda`.
    pub name: &'static str,
    /// One line for `gato backends`.
    pub description: &'static str,
    /// Whether the backend can run here: `Ok(device description)` or `Err(reason)`. Must never panic.
    pub probe: fn() -> std::result::Result<String, String>,
    /// Construct the backend; called only after `probe` succeeded.
    pub create: fn(&BackendOptions) -> Result<Arc<dyn Backend>>,
}

inventory::collect!(BackendEntry);

/// Options passed to a tokenizer constructor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenizerOptions {
    /// A model file for tokenizers that need one (SentencePiece `.model`, `tokenizer.json`, ...).
    pub model_path: Option<PathBuf>,
}

/// A registered text tokenizer.
pub struct TokenizerEntry {
    /// Name users select per field, e.g. `bytes`.
    pub name: &'static str,
    /// One line for listings.
    pub description: &'static str,
    /// Construct the tokenizer.
    pub create: fn(&TokenizerOptions) -> Result<Box<dyn Tokenizer>>,
}

inventory::collect!(TokenizerEntry);

/// Every registered backend, sorted by name.
pub fn backends() -> Vec<&'static BackendEntry> {
    let mut v: Vec<_> = inventory::iter::<BackendEntry>.into_iter().collect();
    v.sort_by_key(|e| e.name);
    v
}

/// Every registered tokenizer, sorted by name.
pub fn tokenizers() -> Vec<&'static TokenizerEntry> {
    let mut v: Vec<_> = inventory::iter::<TokenizerEntry>.into_iter().collect();
    v.sort_by_key(|e| e.name);
    v
}

fn unknown(kind: &'static str, name: &str, names: Vec<&str>) -> Error {
    Error::UnknownPlugin {
        kind,
        name: name.to_string(),
        available: if names.is_empty() {
            "(none)".to_string()
        } else {
            names.join(", ")
        },
    }
}

/// The backend entry with this name, or an error listing the registered ones.
pub fn backend_entry(name: &str) -> Result<&'static BackendEntry> {
    let all = backends();
    all.iter()
        .find(|e| e.name == name)
        .copied()
        .ok_or_else(|| unknown("backend", name, all.iter().map(|e| e.name).collect()))
}

/// The tokenizer entry with this name, or an error listing the registered ones.
pub fn tokenizer_entry(name: &str) -> Result<&'static TokenizerEntry> {
    let all = tokenizers();
    all.iter()
        .find(|e| e.name == name)
        .copied()
        .ok_or_else(|| unknown("tokenizer", name, all.iter().map(|e| e.name).collect()))
}

/// Look up, probe and construct a backend. Unknown → [`Error::UnknownPlugin`]; probe fails →
/// [`Error::BackendUnavailable`] (e.g. "CUDA backend unavailable: no CUDA driver found ...").
pub fn create_backend(name: &str, options: &BackendOptions) -> Result<Arc<dyn Backend>> {
    let entry = backend_entry(name)?;
    (entry.probe)().map_err(|reason| Error::BackendUnavailable {
        name: entry.name.to_string(),
        display: entry.name.to_uppercase(),
        reason,
    })?;
    (entry.create)(options)
}

/// Look up and construct a tokenizer.
pub fn create_tokenizer(name: &str, options: &TokenizerOptions) -> Result<Box<dyn Tokenizer>> {
    (tokenizer_entry(name)?.create)(options)
}
