//! One pre-LayerNorm decoder block (design.md §6): `x += Attn(LN1(x)); x += FFN(LN2(x))`.

use gato_core::{Backend, BinaryOp, GatoConfig, ParamSource, Result, Tensor};

use crate::attention::Attention;
use crate::feed_forward::FeedForward;
use crate::gradients::Gradients;
use crate::kv_cache::LayerCache;
use crate::layers::LayerNorm;

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

    /// [`Self::forward`] over whole sequences in training, each branch's output multiplied by its dropout mask
    /// (`masks[0]`: attention, `masks[1]`: feed-forward; `None`: kept whole) before it joins the residual stream.
    pub fn forward_dropped(
        &self,
        be: &dyn Backend,
        x: &Tensor,
        kv_len: Option<Vec<usize>>,
        masks: &[Option<Tensor>; 2],
    ) -> Result<Tensor> {
        let a = self
            .attn
            .forward(be, &self.ln1.forward(be, x)?, kv_len, None, 0)?;
        let x = be.binary(BinaryOp::Add, x, &dropped(be, a, &masks[0])?)?;
        let f = self.ff.forward(be, &self.ln2.forward(be, &x)?)?;
        be.binary(BinaryOp::Add, &x, &dropped(be, f, &masks[1])?)
    }

    /// The backward of [`Self::forward`] over a whole sequence at input `x` (activations recomputed from it:
    /// checkpointing at block granularity): `x₁ = x + Attn(LN₁(x))`, `y = x₁ + FFN(LN₂(x₁))`, walked in reverse;
    /// gradients added under `blocks.{i}.*`; returns `dx`.
    // The block's inputs, its dropout masks and where its gradients go: one argument each reads best here.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        be: &dyn Backend,
        x: &Tensor,
        kv_len: Option<Vec<usize>>,
        dy: &Tensor,
        masks: &[Option<Tensor>; 2],
        i: usize,
        grads: &mut Gradients,
    ) -> Result<Tensor> {
        let p = format!("blocks.{i}");
        // The forward once more, keeping what each layer's backward needs.
        let (a_in, ln1) = self.ln1.forward_train(be, x)?;
        let (a, attn) = self.attn.forward_train(be, &a_in, kv_len)?;
        let x1 = be.binary(BinaryOp::Add, x, &dropped(be, a, &masks[0])?)?;
        let (f_in, ln2) = self.ln2.forward_train(be, &x1)?;
        // y = x1 + mask₂ ⊙ FFN(LN2(x1)).
        let df = dropped(be, dy.clone(), &masks[1])?;
        let df_in = self
            .ff
            .backward(be, &f_in, &df, &format!("{p}.ff"), grads)?;
        let dx1_ff = self
            .ln2
            .backward(be, &x1, &ln2, &df_in, &format!("{p}.ln2"), grads)?;
        let dx1 = be.binary(BinaryOp::Add, dy, &dx1_ff)?;
        // x1 = x + mask₁ ⊙ Attn(LN1(x)).
        let da = dropped(be, dx1.clone(), &masks[0])?;
        let da_in = self
            .attn
            .backward(be, &a_in, &attn, &da, &format!("{p}.attn"), grads)?;
        let dx_attn = self
            .ln1
            .backward(be, x, &ln1, &da_in, &format!("{p}.ln1"), grads)?;
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
