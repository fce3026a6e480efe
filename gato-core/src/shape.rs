//! Tensor shapes: row-major, contiguous, any rank.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The dimensions of a contiguous row-major tensor.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape(Vec<usize>);

impl Shape {
    /// A shape from its dimensions.
    pub fn new(dims: impl Into<Vec<usize>>) -> Self {
        Shape(dims.into())
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Number of elements (1 for a scalar). Saturates instead of overflowing; [`Shape::checked_elem_count`] errs.
    pub fn elem_count(&self) -> usize {
        self.0.iter().fold(1usize, |a, &d| a.saturating_mul(d))
    }

    /// Number of elements, or an error if the product overflows `usize`.
    pub fn checked_elem_count(&self, op: &'static str) -> Result<usize> {
        self.0
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| {
                Error::shape(
                    op,
                    format!("shape {self} has more elements than fit in usize"),
                )
            })
    }

    /// The last dimension, or an error naming `op` for a scalar.
    pub fn last_dim(&self, op: &'static str) -> Result<usize> {
        self.0
            .last()
            .copied()
            .ok_or_else(|| Error::shape(op, "expected a tensor of rank ≥ 1, got a scalar"))
    }

    /// Dimension `axis`, or an out-of-range error.
    pub fn dim(&self, op: &'static str, axis: usize) -> Result<usize> {
        self.0.get(axis).copied().ok_or_else(|| Error::OutOfRange {
            op,
            what: "axis".into(),
            value: axis.to_string(),
            allowed: format!("[0, {})", self.rank()),
        })
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Self {
        Shape(d.to_vec())
    }
}

impl From<Vec<usize>> for Shape {
    fn from(d: Vec<usize>) -> Self {
        Shape(d)
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(d: [usize; N]) -> Self {
        Shape(d.to_vec())
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
