//! The feed-forward network (App. C.1; design.md §6): `W2 · gelu(W1 x)` (exact-erf GELU, default) or GEGLU
//! `W2 · (gelu(W1a x) ⊙ W1b x)` with a first matrix twice as wide.

use gato_core::{Activation, Backend, GatoConfig, ParamSource, Result, Tensor, UnaryOp};

use crate::gradients::Gradients;
use crate::layers::Linear;

/// What [`FeedForward::forward_train`] keeps for the backward: the hidden pre-activation and its activation.
pub struct FeedForwardSaved {
    pre: Tensor,
    h: Tensor,
}

/// One feed-forward network.
pub struct FeedForward {
    /// `[W, F]` (GELU) or `[W, 2F]` (GEGLU).
    pub input: Linear,
    /// `[F, W]`.
    pub output: Linear,
    activation: Activation,
}

impl FeedForward {
    /// Parameters `{name}.in.*` and `{name}.out.*`.
    pub fn new(src: &mut dyn ParamSource, name: &str, c: &GatoConfig) -> Result<Self> {
        let (w, f) = (c.layer_width, c.feedforward_hidden_size);
        let first = match c.activation {
            Activation::Gelu => f,
            Activation::Geglu => 2 * f,
        };
        let out_std = 0.02 / (2.0 * c.num_transformer_blocks as f32).sqrt();
        Ok(FeedForward {
            input: Linear::new(src, &format!("{name}.in"), w, first, 0.02)?,
            output: Linear::new(src, &format!("{name}.out"), f, w, out_std)?,
            activation: c.activation,
        })
    }

    /// `[..., W]` → `[..., W]`.
    pub fn forward(&self, be: &dyn Backend, x: &Tensor) -> Result<Tensor> {
        let h = match self.activation {
            // Bias and GELU fused into the product where the backend can (Backend::linear_act).
            Activation::Gelu => {
                be.linear_act(x, &self.input.weight, Some(&self.input.bias), UnaryOp::Gelu)?
            }
            Activation::Geglu => be.geglu(&self.input.forward(be, x)?)?,
        };
        self.output.forward(be, &h)
    }

    /// [`Self::forward`] keeping what its backward needs: the hidden pre-activation and activation.
    pub fn forward_train(
        &self,
        be: &dyn Backend,
        x: &Tensor,
    ) -> Result<(Tensor, FeedForwardSaved)> {
        let pre = self.input.forward(be, x)?;
        let h = match self.activation {
            Activation::Gelu => be.unary(UnaryOp::Gelu, &pre)?,
            Activation::Geglu => be.geglu(&pre)?,
        };
        let y = self.output.forward(be, &h)?;
        Ok((y, FeedForwardSaved { pre, h }))
    }

    /// The backward of [`Self::forward_train`] at input `x`: each matrix's gradients added under `{name}.in` /
    /// `{name}.out`; returns `dx`.
    pub fn backward(
        &self,
        be: &dyn Backend,
        x: &Tensor,
        saved: &FeedForwardSaved,
        dy: &Tensor,
        name: &str,
        grads: &mut Gradients,
    ) -> Result<Tensor> {
        let dh = self
            .output
            .backward(be, &saved.h, dy, &format!("{name}.out"), grads)?;
        let dpre = match self.activation {
            Activation::Gelu => be.unary_backward(UnaryOp::Gelu, &saved.pre, &dh)?,
            Activation::Geglu => be.geglu_backward(&saved.pre, &dh)?,
        };
        self.input
            .backward(be, x, &dpre, &format!("{name}.in"), grads)
    }

    /// Named parameters.
    pub fn parameters(&self, name: &str) -> Vec<(String, Tensor)> {
        let mut v = self.input.parameters(&format!("{name}.in"));
        v.extend(self.output.parameters(&format!("{name}.out")));
        v
    }
}
