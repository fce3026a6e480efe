//! AdamW (Loshchilov & Hutter; the paper's App. D: β₁ 0.9, β₂ 0.95, ε 1e-8, weight decay 0.1) with global-norm
//! gradient clipping, on the host for now (the GPU training issue moves the step onto the device).
//!
//! Conventions, stated because frameworks differ: clipping scales every gradient by `max_norm / (norm + 1e-6)`
//! when that is below 1 (PyTorch's `clip_grad_norm_`); weight decay is decoupled and applied before the Adam
//! update, `p ← p·(1 − lr·wd)` (PyTorch's `AdamW`); bias correction divides by `1 − βᵗ` with `t` counted from 1.

use std::collections::BTreeMap;

use gato_core::{Backend, Error, HostSlice, Result, Tensor, TrainingConfig};
use gato_transformer::Gradients;

use crate::params::ParamMap;

/// Gradients on the host, by parameter name.
pub type HostGradients = BTreeMap<String, Vec<f32>>;

/// Whether a parameter is weight-decayed: matrices, embedding tables and convolution kernels (rank ≥ 2) are;
/// biases and normalisation scales and offsets (rank 1) are not, as in GPT-2-style training — decaying a norm's
/// scale towards zero fights the normalisation it exists to undo.
pub fn decays(param: &Tensor) -> bool {
    param.rank() >= 2
}

/// The optimiser's state: first and second moments per parameter, and the step count.
#[derive(Debug, Clone, Default)]
pub struct AdamW {
    m: BTreeMap<String, Vec<f32>>,
    v: BTreeMap<String, Vec<f32>>,
    t: u64,
}

impl AdamW {
    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// The moments, `m.{name}` and `v.{name}`, for a checkpoint.
    pub(crate) fn moments(&self) -> impl Iterator<Item = (String, &Vec<f32>)> {
        self.m
            .iter()
            .map(|(n, v)| (format!("m.{n}"), v))
            .chain(self.v.iter().map(|(n, v)| (format!("v.{n}"), v)))
    }

    /// State restored from a checkpoint: `moments` named as [`Self::moments`] names them, `t` steps taken.
    pub(crate) fn from_parts(moments: BTreeMap<String, Vec<f32>>, t: u64) -> Result<Self> {
        let mut a = AdamW {
            t,
            ..Default::default()
        };
        for (name, values) in moments {
            match (name.strip_prefix("m."), name.strip_prefix("v.")) {
                (Some(p), _) => a.m.insert(p.to_string(), values),
                (_, Some(p)) => a.v.insert(p.to_string(), values),
                _ => {
                    return Err(Error::invalid(
                        "AdamW state",
                        format!("unexpected tensor `{name}` (expected m.* or v.*)"),
                    ))
                }
            };
        }
        Ok(a)
    }

    /// Every gradient on the host, read from the backend once per step; a non-finite value is an error naming the
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

    /// The global norm of `grads` (a parameter without a gradient counts as zero), in f64.
    pub fn global_norm(grads: &HostGradients) -> f64 {
        grads
            .values()
            .flat_map(|g| g.iter().map(|&x| (x as f64) * (x as f64)))
            .sum::<f64>()
            .sqrt()
    }

    /// One AdamW step at learning rate `lr` over every parameter, the gradients first scaled by `clip_scale`.
    pub fn step(
        &mut self,
        be: &dyn Backend,
        cfg: &TrainingConfig,
        params: &mut ParamMap,
        grads: &HostGradients,
        lr: f64,
        clip_scale: f64,
    ) -> Result<()> {
        self.t += 1;
        let (b1, b2, eps, wd) = (
            cfg.adam_beta1,
            cfg.adam_beta2,
            cfg.adam_epsilon,
            cfg.weight_decay,
        );
        let (c1, c2) = (1.0 - b1.powi(self.t as i32), 1.0 - b2.powi(self.t as i32));
        for (name, p) in params.0.iter_mut() {
            let mut values = be.download(p)?.into_f32().unwrap_or_default();
            let zeros;
            let g = match grads.get(name) {
                Some(g) => g,
                None => {
                    zeros = vec![0.0; values.len()];
                    &zeros
                }
            };
            let m = self
                .m
                .entry(name.clone())
                .or_insert_with(|| vec![0.0; values.len()]);
            let v = self
                .v
                .entry(name.clone())
                .or_insert_with(|| vec![0.0; values.len()]);
            let decay = if decays(p) { 1.0 - lr * wd } else { 1.0 };
            for i in 0..values.len() {
                let gi = g[i] as f64 * clip_scale;
                let mi = b1 * m[i] as f64 + (1.0 - b1) * gi;
                let vi = b2 * v[i] as f64 + (1.0 - b2) * gi * gi;
                m[i] = mi as f32;
                v[i] = vi as f32;
                let update = (mi / c1) / ((vi / c2).sqrt() + eps);
                values[i] = (values[i] as f64 * decay - lr * update) as f32;
            }
            *p = be.upload(HostSlice::F32(&values), p.shape())?;
        }
        Ok(())
    }
}

/// The factor that clips gradients of global norm `norm` to `max_norm` (1 when within it, or when `max_norm` is
/// 0: clipping off).
pub fn clip_scale(norm: f64, max_norm: f64) -> f64 {
    if max_norm <= 0.0 {
        return 1.0;
    }
    (max_norm / (norm + 1e-6)).min(1.0)
}

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
