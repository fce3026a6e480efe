//! Where model parameters come from: one construction path for "initialise from a seed" and "load a checkpoint".
//!
//! Every layer asks a [`ParamSource`] for its parameters by name and shape, with the initialiser it would use for a
//! fresh model. A random initialiser draws them; a checkpoint loader looks them up, records every mismatch and
//! reports them all at once. Layer code is therefore written once, and the parameter names live in one place.

use crate::error::Result;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// How a fresh parameter is initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Normal with mean 0 and this standard deviation, truncated at ±2σ.
    Normal(f32),
    /// All zeros (biases, GroupNorm/LayerNorm β).
    Zeros,
    /// All ones (LayerNorm/GroupNorm γ).
    Ones,
}

/// A provider of named parameters.
pub trait ParamSource {
    /// The parameter `name` of `shape`; `init` says how a fresh model initialises it.
    fn param(&mut self, name: &str, shape: &Shape, init: Init) -> Result<Tensor>;
}
