//! The `Embedding` trait and the batch of tokens it embeds (paper §2.2, SPEC §5).
//!
//! The input embedding of a token is a **sum of contributions** (shared lookup table, ResNet patch embedding, patch
//! position, local position); each contribution implements [`Embedding`] over `&dyn Backend` and returns a
//! `[B, T, width]` tensor that is zero at positions it does not apply to.

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// What a token position holds (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// A text token (id in the text block).
    Text,
    /// A discrete value token.
    Discrete,
    /// A continuous value token (mu-law bin).
    Continuous,
    /// An image patch (no id; embedded by the ResNet patch embedding).
    Image,
    /// The separator `|` between observation and action.
    Separator,
}

/// Where a patch sits in its image: row `row` of `rows`, column `col` of `cols` (App. C.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchPosition {
    /// Patch row index.
    pub row: u32,
    /// Number of patch rows in the image.
    pub rows: u32,
    /// Patch column index.
    pub col: u32,
    /// Number of patch columns in the image.
    pub cols: u32,
}

impl PatchPosition {
    /// Normalised row interval `[row/rows, (row+1)/rows)` (App. C.3).
    pub fn row_interval(&self) -> (f64, f64) {
        (
            self.row as f64 / self.rows as f64,
            (self.row + 1) as f64 / self.rows as f64,
        )
    }

    /// Normalised column interval `[col/cols, (col+1)/cols)`.
    pub fn col_interval(&self) -> (f64, f64) {
        (
            self.col as f64 / self.cols as f64,
            (self.col + 1) as f64 / self.cols as f64,
        )
    }

    /// Quantised row interval `[lo, hi)` over `buckets` buckets (SPEC §5), in integers.
    pub fn row_buckets(&self, buckets: u32) -> (u32, u32) {
        bucket_range(self.row, self.rows, buckets)
    }

    /// Quantised column interval `[lo, hi)` over `buckets` buckets.
    pub fn col_buckets(&self, buckets: u32) -> (u32, u32) {
        bucket_range(self.col, self.cols, buckets)
    }
}

/// Quantise interval `index` of `count` equal intervals of [0, 1) into `buckets` buckets (SPEC §5, App. C.3):
/// `lo = buckets·index / count`, `hi = max(lo + 1, min(buckets, buckets·(index+1) / count))`, integer division,
/// so no float rounding moves a boundary. Evaluation uses `(lo + hi) / 2`; training draws uniformly from `[lo, hi)`.
pub fn bucket_range(index: u32, count: u32, buckets: u32) -> (u32, u32) {
    let count = u64::from(count.max(1));
    let b = u64::from(buckets);
    let lo = (b * u64::from(index) / count).min(b.saturating_sub(1));
    let hi = (b * (u64::from(index) + 1) / count).min(b).max(lo + 1);
    (lo as u32, hi as u32)
}

/// The evaluation-mode bucket of interval `index` of `count`: the mean of its bucket range, rounded down.
pub fn eval_bucket(index: u32, count: u32, buckets: u32) -> u32 {
    let (lo, hi) = bucket_range(index, count, buckets);
    (lo + hi) / 2
}

/// Whether embeddings run in training (random patch position within its interval) or evaluation mode (the
/// interval's mean), App. C.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingMode {
    /// Evaluation: deterministic.
    Eval,
    /// Training, with the seed of the random patch-position draws.
    Train {
        /// Seed of the draws.
        seed: u64,
    },
}

/// A host-side batch of `batch` sequences of `seq_len` positions (row-major `[B, T]` arrays), padded to `seq_len`;
/// `lengths[b]` positions of sequence `b` are real.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenBatch {
    /// Number of sequences.
    pub batch: usize,
    /// Positions per sequence (padded).
    pub seq_len: usize,
    /// Real positions per sequence.
    pub lengths: Vec<usize>,
    /// Token id per position; for [`Modality::Image`] positions, the index of the patch in `patches`. Padding: 0.
    pub ids: Vec<u32>,
    /// Modality per position (padding: `Text`, masked by `lengths`).
    pub modality: Vec<Modality>,
    /// Local position per observation token (App. C.3), `None` for actions, the separator and padding.
    pub local_position: Vec<Option<u32>>,
    /// Patch pixels, `[num_patches, C, P, P]` flattened (already normalised to [−1, 1] and divided by √P).
    pub patches: Vec<f32>,
    /// Position of each patch in its image.
    pub patch_positions: Vec<PatchPosition>,
}

impl TokenBatch {
    /// Check that every per-position array has `batch · seq_len` entries, lengths fit, patch indices are in range
    /// and `patches` holds `patch_positions.len()` patches of `patch_elems` values each.
    pub fn validate(&self, patch_elems: usize) -> Result<()> {
        const OP: &str = "TokenBatch";
        let n = self.batch * self.seq_len;
        for (name, len) in [
            ("ids", self.ids.len()),
            ("modality", self.modality.len()),
            ("local_position", self.local_position.len()),
        ] {
            if len != n {
                return Err(Error::shape(
                    OP,
                    format!("`{name}` has {len} entries, expected batch·seq_len = {n}"),
                ));
            }
        }
        if self.lengths.len() != self.batch {
            return Err(Error::shape(
                OP,
                format!(
                    "`lengths` has {} entries, batch is {}",
                    self.lengths.len(),
                    self.batch
                ),
            ));
        }
        if let Some((b, &l)) = self
            .lengths
            .iter()
            .enumerate()
            .find(|(_, &l)| l > self.seq_len)
        {
            return Err(Error::OutOfRange {
                op: OP,
                what: format!("lengths[{b}]"),
                value: l.to_string(),
                allowed: format!("[0, {}]", self.seq_len),
            });
        }
        let num_patches = self.patch_positions.len();
        if self.patches.len() != num_patches * patch_elems {
            return Err(Error::shape(
                OP,
                format!(
                    "`patches` has {} values, expected {num_patches} patches × {patch_elems}",
                    self.patches.len()
                ),
            ));
        }
        for (i, (&m, &id)) in self.modality.iter().zip(&self.ids).enumerate() {
            if m == Modality::Image && id as usize >= num_patches {
                return Err(Error::OutOfRange {
                    op: OP,
                    what: format!("ids[{i}] (patch index)"),
                    value: id.to_string(),
                    allowed: format!("[0, {num_patches})"),
                });
            }
        }
        for (i, p) in self.patch_positions.iter().enumerate() {
            if p.rows == 0 || p.cols == 0 || p.row >= p.rows || p.col >= p.cols {
                return Err(Error::OutOfRange {
                    op: OP,
                    what: format!("patch_positions[{i}]"),
                    value: format!("row {}/{}, col {}/{}", p.row, p.rows, p.col, p.cols),
                    allowed: "row < rows, col < cols, rows ≥ 1, cols ≥ 1".into(),
                });
            }
        }
        Ok(())
    }
}

/// One contribution to the input embedding (§2.2).
pub trait Embedding: Send + Sync {
    /// Name of the contribution, e.g. `patch_position`.
    fn name(&self) -> &str;

    /// The contribution for every position of the batch, `[B, T, width]`, zero where it does not apply.
    fn forward(
        &self,
        backend: &dyn Backend,
        batch: &TokenBatch,
        mode: EmbeddingMode,
    ) -> Result<Tensor>;

    /// Named parameters (for checkpoints), names relative to this contribution.
    fn parameters(&self) -> Vec<(String, Tensor)>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of SPEC §5.
    #[test]
    fn spec_bucket_examples() {
        let rows: Vec<u32> = (0..4).map(|r| eval_bucket(r, 4, 128)).collect();
        assert_eq!(rows, [16, 48, 80, 112]);
        let cols: Vec<u32> = (0..5).map(|c| eval_bucket(c, 5, 128)).collect();
        assert_eq!(cols, [12, 38, 63, 89, 115]);
        let fourteen: Vec<u32> = (0..3).map(|c| eval_bucket(c, 14, 128)).collect();
        assert_eq!(fourteen, [4, 13, 22]);
    }

    #[test]
    fn buckets_are_non_empty_and_in_range_even_with_more_patches_than_buckets() {
        for count in 1..300 {
            for i in 0..count {
                let (lo, hi) = bucket_range(i, count, 128);
                assert!(lo < hi && hi <= 128, "{i}/{count}: [{lo}, {hi})");
            }
        }
    }
}
