//! The KV cache for incremental decoding (design.md §6): per layer, the keys and values of every token so far
//! (`[1, H, T, K]`). When the context window is full, the model drops the oldest whole timesteps and by default
//! rebuilds the cache from the tokens that remain ([`crate::DecodeState`], [`crate::WindowPolicy`]); Gato has no
//! absolute position encoding, but the cached keys of deeper layers depend on the dropped tokens, so a rebuild is
//! the exact answer. [`LayerCache::drop_front`] serves the opt-in sliding policy, which keeps those keys as they
//! are. The paper's Transformer-XL-style memory is not reproduced.

use gato_core::{Backend, Result, Shape, Tensor};

/// Capacity (tokens) of a cache's first allocation unless [`LayerCache::with_capacity`] asks for more; it
/// doubles when full.
const MIN_CAPACITY: usize = 64;

/// Keys and values of one layer: `[1, H, capacity, K]` buffers of which the first `len` tokens are filled.
/// Appending writes the new tokens in place ([`gato_core::LayoutOps::slice_assign`]), so a decoded token costs its own keys
/// and values, not a copy of the whole cache; the causal mask keeps attention off the unfilled tail.
#[derive(Default, Clone)]
pub struct LayerCache {
    k: Option<Tensor>,
    v: Option<Tensor>,
    len: usize,
    /// Slots the first allocation holds at least (0: [`MIN_CAPACITY`]).
    reserve: usize,
}

impl LayerCache {
    /// An empty cache whose first append allocates room for `tokens` (the context window, for acting: the
    /// buffers are then allocated once, and no later token waits for them to grow).
    pub fn with_capacity(tokens: usize) -> Self {
        LayerCache {
            reserve: tokens,
            ..Default::default()
        }
    }

    /// Tokens cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens the buffers hold before they must grow.
    pub fn capacity(&self) -> usize {
        self.k.as_ref().map_or(0, |k| k.dims()[2])
    }

    /// Append new keys and values `[1, H, t, K]`; returns the buffers (`[1, H, capacity, K]`, the first
    /// [`Self::len`] tokens valid) for attention. The returned handles share the buffers: drop them before the
    /// next append, or that append copies (copy-on-write).
    pub fn append(&mut self, be: &dyn Backend, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.dims()[2];
        let needed = self.len + t;
        if needed > self.capacity() {
            let cap = needed
                .max(2 * self.capacity())
                .max(MIN_CAPACITY)
                .max(self.reserve);
            self.k = Some(self.grown(be, self.k.as_ref(), &k, cap)?);
            self.v = Some(self.grown(be, self.v.as_ref(), &v, cap)?);
        }
        if let (Some(ck), Some(cv)) = (&mut self.k, &mut self.v) {
            be.slice_assign(ck, &k, 2, self.len)?;
            be.slice_assign(cv, &v, 2, self.len)?;
        }
        self.len = needed;
        match (&self.k, &self.v) {
            (Some(k), Some(v)) => Ok((k.clone(), v.clone())),
            _ => Err(gato_core::Error::invalid(
                "LayerCache::append",
                "cache buffers missing after growth",
            )),
        }
    }

    /// A zeroed `[1, H, cap, K]` buffer (shaped like `like`) holding the filled part of `old`.
    fn grown(
        &self,
        be: &dyn Backend,
        old: Option<&Tensor>,
        like: &Tensor,
        cap: usize,
    ) -> Result<Tensor> {
        let mut dims = like.dims().to_vec();
        dims[2] = cap;
        let mut buf = be.zeros(&Shape::new(dims), like.dtype())?;
        if let Some(old) = old {
            if self.len > 0 {
                be.slice_assign(&mut buf, &be.slice(old, 2, 0, self.len)?, 2, 0)?;
            }
        }
        Ok(buf)
    }

    /// Forget the oldest `n` tokens: the keys and values of the rest move to the front of the buffers (one copy of
    /// the kept part; no token is recomputed).
    pub fn drop_front(&mut self, be: &dyn Backend, n: usize) -> Result<()> {
        let n = n.min(self.len);
        if n == 0 {
            return Ok(());
        }
        let kept = self.len - n;
        for buf in [&mut self.k, &mut self.v].into_iter().flatten() {
            if kept > 0 {
                // `slice` copies, so the overlapping move reads nothing it has already overwritten.
                let rest = be.slice(buf, 2, n, kept)?;
                be.slice_assign(buf, &rest, 2, 0)?;
            }
        }
        self.len = kept;
        Ok(())
    }

    /// Keep the first `len` tokens (the buffers stay; later appends overwrite the rest).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}
