//! Action sampling (§2.4, design.md §7): each action token is drawn from the logits restricted to the legal ids of its
//! field (discrete: `[offset, offset + n)`; continuous: the continuous block), with a temperature, or by argmax.

use std::ops::Range;

use gato_core::{Error, Result};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// How to pick a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// The most likely legal token (ties: the lowest id). Deterministic.
    Argmax,
    /// Softmax over legal logits divided by this temperature (> 0, finite; 1.0 is the model's distribution).
    Temperature(f32),
}

/// A seeded sampler: the same seed gives the same draws.
pub struct ActionSampler {
    sampling: Sampling,
    rng: StdRng,
}

impl ActionSampler {
    /// A sampler; a temperature that is not finite and positive is an error naming it.
    pub fn new(sampling: Sampling, seed: u64) -> Result<Self> {
        if let Sampling::Temperature(t) = sampling {
            if !(t.is_finite() && t > 0.0) {
                return Err(Error::OutOfRange {
                    op: "ActionSampler",
                    what: "temperature".into(),
                    value: t.to_string(),
                    allowed: "finite and > 0 (or argmax)".into(),
                });
            }
        }
        Ok(ActionSampler {
            sampling,
            rng: StdRng::seed_from_u64(seed),
        })
    }

    /// Pick an id in `legal` from a full row of logits. Always returns an id inside `legal`.
    pub fn sample(&mut self, logits: &[f32], legal: Range<u32>) -> Result<u32> {
        if legal.is_empty() || legal.end as usize > logits.len() {
            return Err(Error::OutOfRange {
                op: "ActionSampler::sample",
                what: "legal ids".into(),
                value: format!("{legal:?}"),
                allowed: format!("a non-empty range within [0, {})", logits.len()),
            });
        }
        self.sample_in(
            &logits[legal.start as usize..legal.end as usize],
            legal.start,
        )
    }

    /// Pick an id from the logits of the legal ids only (`row[j]` is the logit of id `first + j`).
    pub fn sample_in(&mut self, row: &[f32], first: u32) -> Result<u32> {
        if row.is_empty() {
            return Err(Error::invalid("ActionSampler::sample_in", "no legal ids"));
        }
        let legal = first..first + row.len() as u32;
        if let Some(i) = row.iter().position(|x| x.is_nan()) {
            return Err(Error::NonFinite {
                field: "logits".into(),
                index: legal.start as usize + i,
                value: f64::NAN,
            });
        }
        let best = row
            .iter()
            .enumerate()
            .fold(0, |b, (i, &x)| if x > row[b] { i } else { b });
        let pick = match self.sampling {
            Sampling::Argmax => best,
            Sampling::Temperature(t) => {
                let max = row[best] as f64;
                // Each weight is computed twice (for the total, then for the walk) instead of stored: the
                // acting loop allocates nothing, and the same function gives the same bits both times.
                let weight = |x: f32| ((x as f64 - max) / t as f64).exp();
                let total: f64 = row.iter().map(|&x| weight(x)).sum();
                let mut u = self.rng.random::<f64>() * total;
                let mut chosen = row.len() - 1;
                for (i, &x) in row.iter().enumerate() {
                    let wi = weight(x);
                    if u < wi {
                        chosen = i;
                        break;
                    }
                    u -= wi;
                }
                chosen
            }
        };
        Ok(legal.start + pick as u32)
    }
}
