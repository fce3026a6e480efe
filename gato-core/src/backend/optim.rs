//! The optimiser's ops (training, design.md §8): a tensor's sum of squares (global-norm clipping) and AdamW's
//! update of one parameter and its two moments.
//!
//! `adamw_step` is the second exception to the purity rule (after `slice_assign`): it updates the parameter and its
//! moments **in place**, copy-on-write (a handle that shares their storage keeps the old values), because an
//! optimiser that allocated three new tensors per parameter per step would double its memory. Both ops have
//! correct defaults through the host, so a backend that does not implement them still trains.

use crate::dtype::HostSlice;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// One AdamW update of one tensor (Loshchilov & Hutter; App. D), in PyTorch's order of operations:
/// `g ← g·grad_scale; p ← p·(1 − lr·wd); m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²;
/// p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay of this tensor (0 for one that is not decayed).
    pub weight_decay: f64,
    /// Steps taken, this one included (bias correction counts from 1).
    pub t: u64,
    /// Factor applied to the gradient first (global-norm clipping; 1 for none).
    pub grad_scale: f64,
}

/// [`AdamWStep`]'s constants in f32, computed once per tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConstants {
    /// `grad_scale`.
    pub scale: f32,
    /// `1 − lr·wd`.
    pub decay: f32,
    /// β₁, 1 − β₁, β₂, 1 − β₂.
    pub b1: f32,
    /// `1 − β₁`.
    pub one_minus_b1: f32,
    /// β₂.
    pub b2: f32,
    /// `1 − β₂`.
    pub one_minus_b2: f32,
    /// `lr / (1 − β₁ᵗ)`.
    pub step_size: f32,
    /// `1 / √(1 − β₂ᵗ)`.
    pub inv_sqrt_c2: f32,
    /// ε.
    pub eps: f32,
}

impl AdamWStep {
    /// The f32 constants every element's update uses.
    pub fn constants(&self) -> AdamWConstants {
        let t = self.t.max(1).min(i32::MAX as u64) as i32;
        let (c1, c2) = (1.0 - self.beta1.powi(t), 1.0 - self.beta2.powi(t));
        AdamWConstants {
            scale: self.grad_scale as f32,
            decay: (1.0 - self.lr * self.weight_decay) as f32,
            b1: self.beta1 as f32,
            one_minus_b1: (1.0 - self.beta1) as f32,
            b2: self.beta2 as f32,
            one_minus_b2: (1.0 - self.beta2) as f32,
            step_size: (self.lr / c1) as f32,
            inv_sqrt_c2: (1.0 / c2.sqrt()) as f32,
            eps: self.eps as f32,
        }
    }
}

impl AdamWConstants {
    /// One element: `(p, g, m, v)` → `(p', m', v')`. Every backend computes exactly this, in f32.
    #[inline(always)]
    pub fn update(&self, p: f32, g: f32, m: f32, v: f32) -> (f32, f32, f32) {
        let g = g * self.scale;
        let m = self.b1 * m + self.one_minus_b1 * g;
        let v = self.b2 * v + self.one_minus_b2 * (g * g);
        let denom = v.sqrt() * self.inv_sqrt_c2 + self.eps;
        (p * self.decay - self.step_size * (m / denom), m, v)
    }
}

/// One tensor of an [`OptimOps::adamw_clipped`] step: the parameter, its gradient, its moments and its step (whose
/// `grad_scale` is ignored: the clipping factor is decided from the global norm).
pub struct AdamWTensor<'a> {
    /// The parameter, updated in place.
    pub param: &'a mut Tensor,
    /// Its gradient.
    pub grad: &'a Tensor,
    /// First moment, updated in place.
    pub m: &'a mut Tensor,
    /// Second moment, updated in place.
    pub v: &'a mut Tensor,
    /// Learning rate, betas, epsilon, this tensor's weight decay and the step count.
    pub step: AdamWStep,
}

/// What an [`OptimOps::adamw_clipped`] step saw: the step's loss and the squared global norm of the gradients
/// before clipping. When either is not finite, no tensor was changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClippedStep {
    /// The loss passed in.
    pub loss: f64,
    /// `Σ g²` over every gradient.
    pub norm_sq: f64,
}

impl ClippedStep {
    /// Whether the update was taken (the loss and the norm are finite).
    pub fn applied(&self) -> bool {
        self.loss.is_finite() && self.norm_sq.is_finite()
    }
}

/// The factor that clips gradients of global norm `norm` to `max_norm` (PyTorch's `clip_grad_norm_`:
/// `max_norm / (norm + 1e-6)` when below 1; 1 when `max_norm` is 0, clipping off).
pub fn clip_scale(norm: f64, max_norm: f64) -> f64 {
    if max_norm <= 0.0 {
        return 1.0;
    }
    (max_norm / (norm + 1e-6)).min(1.0)
}

/// Optimiser ops (a family of [`super::Backend`]).
pub trait OptimOps: super::MemoryOps {
    /// `Σ x²` over every element of an f32 tensor, accumulated in f64 (non-finite when any element is). The
    /// summation order is fixed by the tensor's size, so the result does not depend on the thread count.
    fn sum_squares(&self, x: &Tensor) -> Result<f64> {
        let v = self.download(x)?.into_f32().ok_or_else(|| Error::DType {
            op: "sum_squares",
            detail: format!("x has dtype {}, expected F32", x.dtype()),
        })?;
        Ok(v.iter().map(|&a| a as f64 * a as f64).sum())
    }

    /// `Σ x²` over every element of every tensor of `xs` (the squared global norm that clipping needs), in f64.
    /// A device backend reduces them all before reading one number back, so a training step pays one
    /// synchronisation for its norm, not one per parameter. The default adds [`OptimOps::sum_squares`] in order.
    fn sum_squares_many(&self, xs: &[&Tensor]) -> Result<f64> {
        xs.iter().map(|x| self.sum_squares(x)).sum()
    }

    /// A whole AdamW step with global-norm clipping decided where the gradients are (design.md §8): the squared
    /// norm of every gradient, the clipping factor ([`clip_scale`] against `max_norm`), then each tensor's update,
    /// all skipped when `loss` (a `[1]` f32 tensor, the step's loss) or the norm is not finite, so a diverging
    /// step changes nothing. Returns the loss and the squared norm, read back together: a device backend's step
    /// waits once, for these two numbers. The default goes through [`OptimOps::sum_squares_many`] and
    /// [`OptimOps::adamw_step`].
    fn adamw_clipped(
        &self,
        tensors: &mut [AdamWTensor<'_>],
        max_norm: f64,
        loss: &Tensor,
    ) -> Result<ClippedStep> {
        let grads: Vec<&Tensor> = tensors.iter().map(|t| t.grad).collect();
        let norm_sq = self.sum_squares_many(&grads)?;
        let loss = self
            .download(loss)?
            .into_f32()
            .and_then(|v| v.first().copied())
            .ok_or_else(|| Error::invalid("adamw_clipped", "the loss must be one f32 value"))?
            as f64;
        let out = ClippedStep { loss, norm_sq };
        if out.applied() {
            let scale = clip_scale(norm_sq.sqrt(), max_norm);
            for t in tensors.iter_mut() {
                let step = AdamWStep {
                    grad_scale: scale,
                    ..t.step
                };
                self.adamw_step(t.param, t.grad, t.m, t.v, &step)?;
            }
        }
        Ok(out)
    }

    /// One AdamW update of `param` with gradient `grad` and moments `m`, `v` (all f32 of one shape), in place
    /// (copy-on-write). The default goes through the host.
    fn adamw_step(
        &self,
        param: &mut Tensor,
        grad: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        step: &AdamWStep,
    ) -> Result<()> {
        crate::ops::adamw_dims(param, grad, m, v)?;
        let f32s = |t: &Tensor| {
            self.download(t)?.into_f32().ok_or_else(|| Error::DType {
                op: "adamw_step",
                detail: format!("dtype {}, expected F32", t.dtype()),
            })
        };
        let (mut p, g, mut mv, mut vv) = (f32s(param)?, f32s(grad)?, f32s(m)?, f32s(v)?);
        let k = step.constants();
        for i in 0..p.len() {
            (p[i], mv[i], vv[i]) = k.update(p[i], g[i], mv[i], vv[i]);
        }
        let shape = param.shape().clone();
        *param = self.upload(HostSlice::F32(&p), &shape)?;
        *m = self.upload(HostSlice::F32(&mv), &shape)?;
        *v = self.upload(HostSlice::F32(&vv), &shape)?;
        Ok(())
    }
}
