//! Causal multi-head self-attention (§2.2, App. C.1; design.md §6): Q, K, V, O projections with biases, `heads × kv`
//! inner width, softmax scale `1/√kv`, the causal mask, key padding per sequence, and an optional KV cache.
//!
//! ```text
//! x [B, T, W] ─q,k,v─► [B, T, H·K] ─split─► [B, H, T, K]
//!   (with a cache: k, v written after the cached tokens, in place; queries start at the cache length)
//! softmax(q·kᵀ/√K + causal/padding mask) · v ─► [B, H, T, K] ─merge─► [B, T, H·K] ─o─► [B, T, W]
//! ```

use gato_core::{AttentionSpec, Backend, GatoConfig, ParamSource, Result, Tensor};

use crate::gradients::Gradients;
use crate::kv_cache::LayerCache;
use crate::layers::Linear;

/// What [`Attention::backward`] needs from [`Attention::forward_train`].
pub struct AttentionSaved {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// Per-head output `[B, H, T, K]`.
    y: Tensor,
    lse: Tensor,
    /// The output merged over heads, `[B, T, H·K]` (the output projection's input).
    merged: Tensor,
    spec: AttentionSpec,
}

/// One attention layer.
pub struct Attention {
    /// Query projection `[W, H·K]`.
    pub q: Linear,
    /// Key projection.
    pub k: Linear,
    /// Value projection.
    pub v: Linear,
    /// Output projection `[H·K, W]`.
    pub o: Linear,
    heads: usize,
    kv: usize,
}

impl Attention {
    /// Parameters `{name}.q|k|v|o.weight|bias`.
    pub fn new(src: &mut dyn ParamSource, name: &str, c: &GatoConfig) -> Result<Self> {
        let (w, inner) = (c.layer_width, c.attention_width());
        let out_std = 0.02 / (2.0 * c.num_transformer_blocks as f32).sqrt();
        Ok(Attention {
            q: Linear::new(src, &format!("{name}.q"), w, inner, 0.02)?,
            k: Linear::new(src, &format!("{name}.k"), w, inner, 0.02)?,
            v: Linear::new(src, &format!("{name}.v"), w, inner, 0.02)?,
            o: Linear::new(src, &format!("{name}.o"), inner, w, out_std)?,
            heads: c.num_attention_heads,
            kv: c.key_value_size,
        })
    }

    /// `x: [B, T, W]` → `[B, T − first_query, W]`: the outputs of query rows `first_query..T` (0: every row).
    /// Keys and values always come from every row. `kv_len[b]` real keys per sequence (padding masked); with
    /// `cache` (batch 1), the new keys and values are appended to it and the queries attend to everything cached
    /// before them. When only the last token's output is needed, the other rows' query, attention and output
    /// projections are skipped.
    pub fn forward(
        &self,
        be: &dyn Backend,
        x: &Tensor,
        kv_len: Option<Vec<usize>>,
        cache: Option<&mut LayerCache>,
        first_query: usize,
    ) -> Result<Tensor> {
        let (b, t) = (x.dims()[0], x.dims()[1]);
        let (h, k) = (self.heads, self.kv);
        let tq = t.saturating_sub(first_query);
        let split = |y: Tensor, rows: usize| -> Result<Tensor> {
            be.permute(&y.reshape([b, rows, h, k])?, &[0, 2, 1, 3])
        };
        let xq = if first_query == 0 {
            x.clone()
        } else {
            be.slice(x, 1, first_query.min(t), tq)?
        };
        let q = split(self.q.forward(be, &xq)?, tq)?;
        let kk = split(self.k.forward(be, x)?, t)?;
        let vv = split(self.v.forward(be, x)?, t)?;
        let (kk, vv, q_offset, kv_len) = match cache {
            Some(c) => {
                let offset = c.len();
                let (kk, vv) = c.append(be, kk, vv)?;
                // The buffers hold `capacity` slots, of which the first `c.len()` are filled. The causal mask
                // already stops there: the last query sits at position `c.len() − 1` and sees keys up to it, so
                // no key-length list is needed (nor allocated per token).
                (kk, vv, offset + first_query, None)
            }
            None => (kk, vv, first_query, kv_len),
        };
        let spec = AttentionSpec {
            scale: 1.0 / (k as f32).sqrt(),
            causal: true,
            q_offset,
            kv_len,
        };
        let y = be.attention(&q, &kk, &vv, &spec)?; // [B, H, Tq, K]
        let y = be.permute(&y, &[0, 2, 1, 3])?.reshape([b, tq, h * k])?;
        self.o.forward(be, &y)
    }

    /// [`Self::forward`] over a whole sequence (no cache) at input `x` `[B, T, W]`, also returning what the
    /// backward needs: the per-head Q, K, V and output, the row log-sum-exp (design.md §8) and the merged output.
    pub fn forward_train(
        &self,
        be: &dyn Backend,
        x: &Tensor,
        kv_len: Option<Vec<usize>>,
    ) -> Result<(Tensor, AttentionSaved)> {
        let (b, t) = (x.dims()[0], x.dims()[1]);
        let (h, k) = (self.heads, self.kv);
        let split = |y: Tensor| be.permute(&y.reshape([b, t, h, k])?, &[0, 2, 1, 3]);
        let (q, kk, vv) = (
            split(self.q.forward(be, x)?)?,
            split(self.k.forward(be, x)?)?,
            split(self.v.forward(be, x)?)?,
        );
        let spec = AttentionSpec {
            scale: 1.0 / (k as f32).sqrt(),
            causal: true,
            q_offset: 0,
            kv_len,
        };
        let (y, lse) = be.attention_train(&q, &kk, &vv, &spec)?;
        let merged = be.permute(&y, &[0, 2, 1, 3])?.reshape([b, t, h * k])?;
        let out = self.o.forward(be, &merged)?;
        Ok((
            out,
            AttentionSaved {
                q,
                k: kk,
                v: vv,
                y,
                lse,
                merged,
                spec,
            },
        ))
    }

    /// The backward of [`Self::forward_train`] at input `x` from what it saved: attention's backward rebuilds the
    /// probabilities from the row log-sum-exp, each projection's gradients are added under `{name}.q|k|v|o`;
    /// returns `dx`.
    pub fn backward(
        &self,
        be: &dyn Backend,
        x: &Tensor,
        saved: &AttentionSaved,
        dy: &Tensor,
        name: &str,
        grads: &mut Gradients,
    ) -> Result<Tensor> {
        let (b, t) = (x.dims()[0], x.dims()[1]);
        let (h, k) = (self.heads, self.kv);
        let split = |y: Tensor| be.permute(&y.reshape([b, t, h, k])?, &[0, 2, 1, 3]);
        let merge = |y: &Tensor| be.permute(y, &[0, 2, 1, 3])?.reshape([b, t, h * k]);
        let s = saved;
        let dmerged = self
            .o
            .backward(be, &s.merged, dy, &format!("{name}.o"), grads)?;
        let dyh = split(dmerged)?;
        let (dq, dk, dv) = be.attention_backward(&s.q, &s.k, &s.v, &s.y, &s.lse, &dyh, &s.spec)?;
        let mut dx = self
            .q
            .backward(be, x, &merge(&dq)?, &format!("{name}.q"), grads)?;
        for (lin, d, n) in [(&self.k, &dk, "k"), (&self.v, &dv, "v")] {
            let part = lin.backward(be, x, &merge(d)?, &format!("{name}.{n}"), grads)?;
            dx = be.binary(gato_core::BinaryOp::Add, &dx, &part)?;
        }
        Ok(dx)
    }

    /// Named parameters.
    pub fn parameters(&self, name: &str) -> Vec<(String, Tensor)> {
        [
            ("q", &self.q),
            ("k", &self.k),
            ("v", &self.v),
            ("o", &self.o),
        ]
        .iter()
        .flat_map(|(n, l)| l.parameters(&format!("{name}.{n}")))
        .collect()
    }
}
