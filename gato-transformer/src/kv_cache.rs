//! The KV cache for incremental decoding (SPEC §6): per layer, the keys and values of every token so far
//! (`[1, H, T, K]`). When the context window is full, the model drops the oldest whole timesteps and rebuilds the
//! cache from the tokens that remain ([`crate::DecodeState`]); Gato has no absolute position encoding, but the
//! cached keys of deeper layers depend on the dropped tokens, so a rebuild is the exact answer. The paper's
//! Transformer-XL-style memory is not reproduced.

use gato_core::{Backend, Result, Tensor};

/// Keys and values of one layer.
#[derive(Default, Clone)]
pub struct LayerCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
}

impl LayerCache {
    /// Tokens cached.
    pub fn len(&self) -> usize {
        self.k.as_ref().map_or(0, |k| k.dims()[2])
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append new keys and values `[1, H, t, K]`; returns the full keys and values.
    pub fn append(&mut self, be: &dyn Backend, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = match (&self.k, &self.v) {
            (Some(ck), Some(cv)) => (be.concat(&[ck, &k], 2)?, be.concat(&[cv, &v], 2)?),
            _ => (k, v),
        };
        self.k = Some(k.clone());
        self.v = Some(v.clone());
        Ok((k, v))
    }

    /// Keep the first `len` tokens.
    pub fn truncate(&mut self, be: &dyn Backend, len: usize) -> Result<()> {
        if len >= self.len() {
            return Ok(());
        }
        if len == 0 {
            *self = LayerCache::default();
            return Ok(());
        }
        if let (Some(k), Some(v)) = (&self.k, &self.v) {
            let (k, v) = (be.slice(k, 2, 0, len)?, be.slice(v, 2, 0, len)?);
            self.k = Some(k);
            self.v = Some(v);
        }
        Ok(())
    }
}
