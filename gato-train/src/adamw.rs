//! AdamW (Loshchilov & Hutter; the paper's App. D: β₁ 0.9, β₂ 0.95, ε 1e-8, weight decay 0.1) with global-norm
//! gradient clipping, on the backend: the norm from `OptimOps::sum_squares`, the update in place by
//! `OptimOps::adamw_step`.
//!
//! Conventions, stated because frameworks differ: clipping scales every gradient by `max_norm / (norm + 1e-6)`
//! when that is below 1 (PyTorch's `clip_grad_norm_`); weight decay is decoupled and applied before the Adam
//! update, `p ← p·(1 − lr·wd)` (PyTorch's `AdamW`); bias correction divides by `1 − βᵗ` with `t` counted from 1.

use std::collections::BTreeMap;

use gato_core::{
    AdamWStep, AdamWTensor, Backend, ClippedStep, DType, Error, HostSlice, Result, Tensor,
    TrainingConfig,
};
use gato_transformer::Gradients;

use crate::params::ParamMap;

/// Gradients on the host, by parameter name (for tools that compare them with another framework's).
pub type HostGradients = BTreeMap<String, Vec<f32>>;

/// Whether a parameter is weight-decayed: matrices, embedding tables and convolution kernels (rank ≥ 2) are;
/// biases and normalisation scales and offsets (rank 1) are not, as in GPT-2-style training — decaying a norm's
/// scale towards zero fights the normalisation it exists to undo.
pub fn decays(param: &Tensor) -> bool {
    param.rank() >= 2
}

/// The optimiser's state: first and second moments per parameter (tensors on the backend, updated in place) and
/// the step count.
#[derive(Debug, Clone, Default)]
pub struct AdamW {
    m: BTreeMap<String, Tensor>,
    v: BTreeMap<String, Tensor>,
    t: u64,
    /// Zero gradients of the parameters the last step had none for.
    zeros: BTreeMap<String, Tensor>,
}

impl AdamW {
    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// The moments, `m.{name}` and `v.{name}`, read to the host for a checkpoint.
    pub(crate) fn moments(&self, be: &dyn Backend) -> Result<Vec<(String, Vec<f32>)>> {
        let named = self
            .m
            .iter()
            .map(|(n, t)| (format!("m.{n}"), t))
            .chain(self.v.iter().map(|(n, t)| (format!("v.{n}"), t)));
        named
            .map(|(n, t)| Ok((n, be.download(t)?.into_f32().unwrap_or_default())))
            .collect()
    }

    /// State restored from a checkpoint: `moments` named as [`Self::moments`] names them (each uploaded in the
    /// shape of its parameter in `params`), `t` steps taken.
    pub(crate) fn from_parts(
        be: &dyn Backend,
        params: &ParamMap,
        moments: BTreeMap<String, Vec<f32>>,
        t: u64,
    ) -> Result<Self> {
        let mut a = AdamW {
            t,
            ..Default::default()
        };
        for (name, values) in moments {
            let (map, p) = match (name.strip_prefix("m."), name.strip_prefix("v.")) {
                (Some(p), _) => (&mut a.m, p),
                (_, Some(p)) => (&mut a.v, p),
                _ => {
                    return Err(Error::invalid(
                        "AdamW state",
                        format!("unexpected tensor `{name}` (expected m.* or v.*)"),
                    ))
                }
            };
            let shape = match params.0.get(p) {
                Some(t) if t.elem_count() == values.len() => t.shape().clone(),
                Some(t) => {
                    return Err(Error::invalid(
                        "AdamW state",
                        format!(
                            "`{name}` holds {} values, parameter `{p}` has {}",
                            values.len(),
                            t.elem_count()
                        ),
                    ))
                }
                None => {
                    return Err(Error::invalid(
                        "AdamW state",
                        format!("`{name}`: the model has no parameter `{p}`"),
                    ))
                }
            };
            map.insert(p.to_string(), be.upload(HostSlice::F32(&values), &shape)?);
        }
        Ok(a)
    }

    /// Every gradient on the host (for tools that compare them); a non-finite value is an error naming the
    /// parameter and index.
    pub fn host_gradients(be: &dyn Backend, grads: &Gradients) -> Result<HostGradients> {
        let mut out = BTreeMap::new();
        for (name, g) in grads.iter() {
            let g = be.download(g)?.into_f32().unwrap_or_default();
            if let Some(i) = g.iter().position(|x| !x.is_finite()) {
                return Err(Error::NonFinite {
                    field: format!("gradient of {name}"),
                    index: i,
                    value: g[i] as f64,
                });
            }
            out.insert(name.clone(), g);
        }
        Ok(out)
    }

    /// The global norm of `grads` (a parameter without a gradient counts as zero), summed in f64 on the backend in
    /// one reduction ([`gato_core::OptimOps::sum_squares_many`]). A non-finite gradient is an error naming the parameter, the first bad index and its value.
    pub fn global_norm(be: &dyn Backend, grads: &Gradients) -> Result<f64> {
        let all: Vec<&Tensor> = grads.iter().map(|(_, g)| g).collect();
        let sum = be.sum_squares_many(&all)?;
        if !sum.is_finite() {
            // Only on this path is each tensor read back, to name the parameter and the element.
            for (name, g) in grads.iter() {
                let v = be.download(g)?.into_f32().unwrap_or_default();
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    return Err(Error::NonFinite {
                        field: format!("gradient of {name}"),
                        index: i,
                        value: v[i] as f64,
                    });
                }
            }
            return Err(Error::NonFinite {
                field: "squared gradient norm (every element is finite; the sum overflowed)".into(),
                index: 0,
                value: sum,
            });
        }
        Ok(sum.sqrt())
    }

    /// One AdamW step at learning rate `lr` over every parameter (a parameter without a gradient takes a
    /// zero-gradient step: it is still decayed), the gradients first scaled by `clip_scale`; in place on the
    /// backend ([`gato_core::OptimOps::adamw_step`]).
    pub fn step(
        &mut self,
        be: &dyn Backend,
        cfg: &TrainingConfig,
        params: &mut ParamMap,
        grads: &Gradients,
        lr: f64,
        clip_scale: f64,
    ) -> Result<()> {
        self.t += 1;
        let t = self.t;
        let mut tensors = self.tensors(be, cfg, params, grads, lr)?;
        for x in tensors.iter_mut() {
            let step = AdamWStep {
                grad_scale: clip_scale,
                ..x.step
            };
            be.adamw_step(x.param, x.grad, x.m, x.v, &step)?;
        }
        debug_assert_eq!(t, self.t);
        Ok(())
    }

    /// One AdamW step with global-norm clipping (against `cfg.gradient_clip_norm`) decided on the backend
    /// ([`gato_core::OptimOps::adamw_clipped`]): `loss` is the step's loss as a `[1]` tensor, and the loss and the
    /// squared gradient norm come back together, the step's one read-back. When either is not finite nothing is
    /// updated and the step count stays, and the returned [`ClippedStep`] says so.
    pub fn step_clipped(
        &mut self,
        be: &dyn Backend,
        cfg: &TrainingConfig,
        params: &mut ParamMap,
        grads: &Gradients,
        lr: f64,
        loss: &Tensor,
    ) -> Result<ClippedStep> {
        self.t += 1;
        let out = {
            let mut tensors = self.tensors(be, cfg, params, grads, lr)?;
            be.adamw_clipped(&mut tensors, cfg.gradient_clip_norm, loss)?
        };
        if !out.applied() {
            self.t -= 1;
        }
        Ok(out)
    }

    /// Each parameter with its gradient (zeros where it has none), its moments (created at zero on the first
    /// step) and its step at count `self.t`.
    fn tensors<'a>(
        &'a mut self,
        be: &dyn Backend,
        cfg: &TrainingConfig,
        params: &'a mut ParamMap,
        grads: &'a Gradients,
        lr: f64,
    ) -> Result<Vec<AdamWTensor<'a>>> {
        for (name, p) in params.0.iter() {
            for map in [&mut self.m, &mut self.v] {
                if !map.contains_key(name) {
                    map.insert(name.clone(), be.zeros(p.shape(), DType::F32)?);
                }
            }
        }
        let missing: Vec<(String, Tensor)> = params
            .0
            .iter()
            .filter(|(name, _)| grads.get(name).is_none())
            .map(|(name, p)| Ok((name.clone(), be.zeros(p.shape(), DType::F32)?)))
            .collect::<Result<_>>()?;
        self.zeros = missing.into_iter().collect();
        let t = self.t;
        let (m, v, zeros) = (&mut self.m, &mut self.v, &self.zeros);
        let mut ms = m.iter_mut();
        let mut vs = v.iter_mut();
        let mut out = Vec::with_capacity(params.0.len());
        for (name, p) in params.0.iter_mut() {
            // The moment maps hold exactly the parameters' names (inserted above), in the same sorted order.
            let (mn, mt) = ms
                .find(|(n, _)| *n == name)
                .ok_or_else(|| no_moments(name))?;
            let (_, vt) = vs.find(|(n, _)| *n == mn).ok_or_else(|| no_moments(name))?;
            let grad = match grads.get(name) {
                Some(g) => g,
                None => zeros.get(name).ok_or_else(|| no_moments(name))?,
            };
            let weight_decay = if decays(p) { cfg.weight_decay } else { 0.0 };
            out.push(AdamWTensor {
                param: p,
                grad,
                m: mt,
                v: vt,
                step: AdamWStep {
                    lr,
                    beta1: cfg.adam_beta1,
                    beta2: cfg.adam_beta2,
                    eps: cfg.adam_epsilon,
                    weight_decay,
                    t,
                    grad_scale: 1.0,
                },
            });
        }
        Ok(out)
    }
}

fn no_moments(name: &str) -> Error {
    Error::invalid("AdamW", format!("no moments for `{name}`"))
}

pub use gato_core::clip_scale;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_follows_the_stated_convention() {
        assert_eq!(clip_scale(0.5, 1.0), 1.0);
        assert!((clip_scale(4.0, 1.0) - 1.0 / (4.0 + 1e-6)).abs() < 1e-15);
        assert_eq!(clip_scale(100.0, 0.0), 1.0);
    }
}
