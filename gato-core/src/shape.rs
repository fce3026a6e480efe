//! Tensor shapes: row-major, contiguous, any rank.
//!
//! Up to [`INLINE_RANK`] dimensions are stored inline (no heap allocation), so creating and cloning the shapes
//! of an op's output costs nothing on the acting path (design.md §7: a decoded token allocates nothing).

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::error::{Error, Result};

/// Ranks up to this are held without a heap allocation (every tensor of a Gato forward has rank ≤ 4).
pub const INLINE_RANK: usize = 4;

/// The dimensions of a contiguous row-major tensor. Serialises as a list of integers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape(SmallVec<[usize; INLINE_RANK]>);

impl Shape {
    /// A shape from its dimensions (an array, a slice or a `Vec`).
    pub fn new(dims: impl AsRef<[usize]>) -> Self {
        Shape(SmallVec::from_slice(dims.as_ref()))
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

impl FromIterator<usize> for Shape {
    /// Dimensions in order; inline (no allocation) up to [`INLINE_RANK`] of them.
    fn from_iter<I: IntoIterator<Item = usize>>(dims: I) -> Self {
        Shape(dims.into_iter().collect())
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Self {
        Shape::new(d)
    }
}

impl From<Vec<usize>> for Shape {
    fn from(d: Vec<usize>) -> Self {
        Shape(SmallVec::from_vec(d))
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(d: [usize; N]) -> Self {
        Shape::new(d)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}
