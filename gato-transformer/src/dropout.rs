//! Residual dropout in training (design.md §8; SPEC: 0.1, configurable, off at inference): each block's attention
//! output and feed-forward output are multiplied, before they join the residual stream, by a mask whose entries are
//! `0` with probability `rate` and `1 / (1 − rate)` otherwise (GPT-2's `resid_pdrop`; attention probabilities and
//! embeddings are not dropped). The masks come from a seed, so a step is reproducible and a resumed run draws the
//! masks the uninterrupted one would have.

use gato_core::{Backend, Error, HostSlice, Result, Shape, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Dropout of one training step: its rate and the seed its masks are drawn from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    /// Probability that an activation is zeroed, in `[0, 1)`.
    pub rate: f64,
    /// Seed of the masks (one stream per block and branch).
    pub seed: u64,
}

impl Dropout {
    /// No dropout.
    pub const OFF: Dropout = Dropout { rate: 0.0, seed: 0 };

    /// Dropout at `rate` drawn from `seed`; `rate` must be in `[0, 1)`.
    pub fn new(rate: f64, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::invalid(
                "dropout_rate",
                format!("{rate} is outside [0, 1)"),
            ));
        }
        Ok(Dropout { rate, seed })
    }

    /// Whether anything is dropped.
    pub fn is_on(&self) -> bool {
        self.rate > 0.0
    }

    /// The mask of block `block`'s branch `branch` (0: attention, 1: feed-forward) for activations of shape
    /// `shape`, on `be`; `None` when dropout is off.
    pub fn mask(
        &self,
        be: &dyn Backend,
        shape: &Shape,
        block: usize,
        branch: usize,
    ) -> Result<Option<Tensor>> {
        if !self.is_on() {
            return Ok(None);
        }
        // SplitMix64's increment keeps the per-(block, branch) streams apart.
        let stream = (2 * block + branch) as u64 + 1;
        let mut rng = StdRng::seed_from_u64(self.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let keep = (1.0 / (1.0 - self.rate)) as f32;
        let values: Vec<f32> = (0..shape.elem_count())
            .map(|_| {
                if rng.random::<f64>() < self.rate {
                    0.0
                } else {
                    keep
                }
            })
            .collect();
        be.upload(HostSlice::F32(&values), shape).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_outside_zero_to_one_are_refused() {
        for bad in [-0.1, 1.0, f64::NAN] {
            let e = Dropout::new(bad, 0).unwrap_err().to_string();
            assert!(e.contains("dropout_rate"), "{e}");
        }
        assert!(!Dropout::new(0.0, 3).unwrap().is_on());
    }
}
