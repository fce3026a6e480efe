//! One pre-LayerNorm decoder block (design.md §6): `x += Attn(LN1(x)); x += FFN(LN2(x))`.

use gato_core::{Backend, BinaryOp, GatoConfig, ParamSource, Result, Tensor};

use crate::attention::{Attention, AttentionSaved};
use crate::feed_forward::{FeedForward, FeedForwardSaved};
use crate::gradients::Gradients;
use crate::kv_cache::LayerCache;
use crate::layers::{LayerNorm, NormStats};

/// What [`DecoderBlock::forward_train`] keeps for the backward: the block's input, each norm's statistics and
/// output, attention's saved tensors, the residual after attention, the feed-forward's activations and the
/// dropout masks.
pub struct BlockSaved {
    x: Tensor,
    ln1: NormStats,
    a_in: Tensor,
    attn: AttentionSaved,
    x1: Tensor,
    ln2: NormStats,
    f_in: Tensor,
    ff: FeedForwardSaved,
    masks: [Option<Tensor>; 2],
}

/// A decoder block.
pub struct DecoderBlock {
    /// LayerNorm before attention.
    pub ln1: LayerNorm,
    /// Self-attention.
    pub attn: Attention,
    /// LayerNorm before the feed-forward network.
    pub ln2: LayerNorm,
    /// Feed-forward network.
    pub ff: FeedForward,
}

impl DecoderBlock {
    /// Parameters `blocks.{i}.*`.
    pub fn new(src: &mut dyn ParamSource, i: usize, c: &GatoConfig) -> Result<Self> {
        let p = format!("blocks.{i}");
        let eps = c.layer_norm_eps as f32;
        Ok(DecoderBlock {
            ln1: LayerNorm::new(src, &format!("{p}.ln1"), c.layer_width, eps)?,
            attn: Attention::new(src, &format!("{p}.attn"), c)?,
            ln2: LayerNorm::new(src, &format!("{p}.ln2"), c.layer_width, eps)?,
            ff: FeedForward::new(src, &format!("{p}.ff"), c)?,
        })
    }

    /// `[B, T, W]` → `[B, T − first_query, W]`: the outputs of rows `first_query..T` (0: every row); every row's
    /// keys and values are still computed and cached ([`Attention::forward`]).
    pub fn forward(
        &self,
        be: &dyn Backend,
        x: &Tensor,
        kv_len: Option<Vec<usize>>,
        cache: Option<&mut LayerCache>,
        first_query: usize,
    ) -> Result<Tensor> {
        let a = self
            .attn
            .forward(be, &self.ln1.forward(be, x)?, kv_len, cache, first_query)?;
        let rows = if first_query == 0 {
            x.clone()
        } else {
            be.slice(x, 1, first_query, x.dims()[1] - first_query)?
        };
        let x = be.binary(BinaryOp::Add, &rows, &a)?;
        let f = self.ff.forward(be, &self.ln2.forward(be, &x)?)?;
        be.binary(BinaryOp::Add, &x, &f)
    }

    /// [`Self::forward`] over whole sequences in training, keeping every activation its backward needs (no
    /// recomputation: the arithmetic of a step is the forward's three times), each branch's output multiplied by
    /// its dropout mask (`masks[0]`: attention, `masks[1]`: feed-forward; `None`: kept whole) before it joins the
    /// residual stream.
    pub fn forward_train(
        &self,
        be: &dyn Backend,
        x: &Tensor,
        kv_len: Option<Vec<usize>>,
        masks: [Option<Tensor>; 2],
    ) -> Result<(Tensor, BlockSaved)> {
        let (a_in, ln1) = self.ln1.forward_train(be, x)?;
        let (a, attn) = self.attn.forward_train(be, &a_in, kv_len)?;
        let x1 = be.binary(BinaryOp::Add, x, &dropped(be, a, &masks[0])?)?;
        let (f_in, ln2) = self.ln2.forward_train(be, &x1)?;
        let (f, ff) = self.ff.forward_train(be, &f_in)?;
        let y = be.binary(BinaryOp::Add, &x1, &dropped(be, f, &masks[1])?)?;
        Ok((
            y,
            BlockSaved {
                x: x.clone(),
                ln1,
                a_in,
                attn,
                x1,
                ln2,
                f_in,
                ff,
                masks,
            },
        ))
    }

    /// The backward of [`Self::forward_train`] from what it saved: `x₁ = x + m₁ ⊙ Attn(LN₁(x))`,
    /// `y = x₁ + m₂ ⊙ FFN(LN₂(x₁))`, walked in reverse; gradients added under `blocks.{i}.*`; returns `dx`.
    pub fn backward(
        &self,
        be: &dyn Backend,
        saved: &BlockSaved,
        dy: &Tensor,
        i: usize,
        grads: &mut Gradients,
    ) -> Result<Tensor> {
        let p = format!("blocks.{i}");
        let s = saved;
        let df = dropped(be, dy.clone(), &s.masks[1])?;
        let df_in = self
            .ff
            .backward(be, &s.f_in, &s.ff, &df, &format!("{p}.ff"), grads)?;
        let dx1_ff = self
            .ln2
            .backward(be, &s.x1, &s.ln2, &df_in, &format!("{p}.ln2"), grads)?;
        let dx1 = be.binary(BinaryOp::Add, dy, &dx1_ff)?;
        let da = dropped(be, dx1.clone(), &s.masks[0])?;
        let da_in = self
            .attn
            .backward(be, &s.a_in, &s.attn, &da, &format!("{p}.attn"), grads)?;
        let dx_attn = self
            .ln1
            .backward(be, &s.x, &s.ln1, &da_in, &format!("{p}.ln1"), grads)?;
        be.binary(BinaryOp::Add, &dx1, &dx_attn)
    }

    /// Named parameters.
    pub fn parameters(&self, i: usize) -> Vec<(String, Tensor)> {
        let p = format!("blocks.{i}");
        let mut v = self.ln1.parameters(&format!("{p}.ln1"));
        v.extend(self.attn.parameters(&format!("{p}.attn")));
        v.extend(self.ln2.parameters(&format!("{p}.ln2")));
        v.extend(self.ff.parameters(&format!("{p}.ff")));
        v
    }
}

/// `x ⊙ mask`, or `x` without a mask. (Dropout's backward is the same product: the mask is its own Jacobian.)
fn dropped(be: &dyn Backend, x: Tensor, mask: &Option<Tensor>) -> Result<Tensor> {
    match mask {
        Some(m) => be.binary(BinaryOp::Mul, &x, m),
        None => Ok(x),
    }
}
