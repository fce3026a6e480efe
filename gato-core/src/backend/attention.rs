//! Softmax and causal scaled dot-product attention (paper §2.2, App. C.1).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Options of scaled dot-product attention.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AttentionSpec {
    /// Softmax scale, `1/√kv` in Gato (design.md §6).
    pub scale: f32,
    /// Apply the causal mask: query `i` sees keys `j ≤ q_offset + i`.
    pub causal: bool,
    /// Absolute position of the first query among the keys (0 for a full forward; the cache length when decoding
    /// new tokens against a KV cache).
    pub q_offset: usize,
    /// Per batch entry, how many leading keys are real (the rest is padding). `None`: all keys are real.
    /// A query row that sees no real key outputs zeros.
    pub kv_len: Option<Vec<usize>>,
}

/// Softmax and attention (a family of [`super::Backend`]).
pub trait AttentionOps {
    /// Softmax over the last dim.
    fn softmax(&self, x: &Tensor) -> Result<Tensor>;

    /// Log-softmax over the last dim (for the cross-entropy loss).
    fn log_softmax(&self, x: &Tensor) -> Result<Tensor>;

    /// Scaled dot-product attention. `q: [B, H, Tq, D]`, `k: [B, H, Tk, D]`, `v: [B, H, Tk, Dv]` →
    /// `[B, H, Tq, Dv]`; masking per [`AttentionSpec`].
    fn attention(&self, q: &Tensor, k: &Tensor, v: &Tensor, spec: &AttentionSpec)
        -> Result<Tensor>;

    // ---- backward (training, design.md §8); defaults: not implemented by this backend ----

    /// [`AttentionOps::attention`] that also returns each query row's log-sum-exp of its visible scores,
    /// `[B, H, Tq]` (−∞ for a row that sees no key): all the backward needs to rebuild the probabilities.
    fn attention_train(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        spec: &AttentionSpec,
    ) -> Result<(Tensor, Tensor)> {
        let _ = (q, k, v, spec);
        Err(Error::Unsupported {
            backend: std::any::type_name::<Self>().to_string(),
            op: "attention_train",
        })
    }

    /// The backward of attention, flash-style: from the inputs, the forward's output `out` and row log-sum-exp
    /// `lse`, and `dout`, returns `(dq, dk, dv)`, recomputing the scores instead of reading a stored `T × T`
    /// matrix (a backend holds at most a tile of it at a time).
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        lse: &Tensor,
        dout: &Tensor,
        spec: &AttentionSpec,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let _ = (q, k, v, out, lse, dout, spec);
        Err(Error::Unsupported {
            backend: std::any::type_name::<Self>().to_string(),
            op: "attention_backward",
        })
    }

    /// Fused softmax cross-entropy of `logits: [N, V]` against `targets: [N]` (U32; [`crate::ops::PAD_ID`]: no
    /// target on that row), scaled by `scale` (1 / the number of targets for a mean): returns the loss `[1]`,
    /// reduced on the device, and `dlogits = scale · (softmax − one_hot)`, zero on rows without a target.
    fn cross_entropy(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        scale: f32,
    ) -> Result<(Tensor, Tensor)> {
        let _ = (logits, targets, scale);
        Err(Error::Unsupported {
            backend: std::any::type_name::<Self>().to_string(),
            op: "cross_entropy",
        })
    }
}
