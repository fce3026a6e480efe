//! The `Embedding` trait and the batch of tokens it embeds (paper §2.2, design.md §5).
//!
//! The input embedding of a token is a **sum of contributions** (shared lookup table, ResNet patch embedding, patch
//! position, local position); each contribution implements [`Embedding`] over `&dyn Backend` and returns a
//! `[B, T, width]` tensor that is zero at positions it does not apply to.

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// What a token position holds (design.md §4).
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
    /// Whether the token at each position is a prediction target (§2.3); padding: `false`.
    pub loss: Vec<bool>,
    /// Timestep of each position within its episode (for sliding the KV-cache window by whole timesteps).
    pub timestep: Vec<u32>,
    /// Patch pixels, `[num_patches, P, P, C]` flattened row-major as the tokenizer emits them (design.md §3: (y, x, c)),
    /// already normalised to [−1, 1] and divided by √P.
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
            ("loss", self.loss.len()),
            ("timestep", self.timestep.len()),
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

impl TokenBatch {
    /// Positions `range` of a single-sequence batch, with their patches renumbered from 0.
    pub fn slice_single(&self, range: std::ops::Range<usize>) -> Result<TokenBatch> {
        if self.batch != 1
            || range.end > self.lengths.first().copied().unwrap_or(0)
            || range.start > range.end
        {
            return Err(Error::invalid(
                "TokenBatch::slice_single",
                format!(
                    "range {range:?} of a batch of {} sequences, length {:?}",
                    self.batch, self.lengths
                ),
            ));
        }
        let patch_len = if self.patch_positions.is_empty() {
            0
        } else {
            self.patches.len() / self.patch_positions.len()
        };
        let mut out = TokenBatch {
            batch: 1,
            seq_len: range.len(),
            lengths: vec![range.len()],
            ..Default::default()
        };
        for i in range {
            let mut id = self.ids[i];
            if self.modality[i] == Modality::Image {
                let p = id as usize;
                id = out.patch_positions.len() as u32;
                out.patch_positions.push(self.patch_positions[p]);
                out.patches
                    .extend_from_slice(&self.patches[p * patch_len..(p + 1) * patch_len]);
            }
            out.ids.push(id);
            out.modality.push(self.modality[i]);
            out.local_position.push(self.local_position[i]);
            out.loss.push(self.loss[i]);
            out.timestep.push(self.timestep[i]);
        }
        Ok(out)
    }

    /// Room for `additional` more positions in every per-position field, so that many
    /// [`TokenBatch::extend_single`] calls without image patches allocate nothing.
    pub fn reserve(&mut self, additional: usize) {
        self.ids.reserve(additional);
        self.modality.reserve(additional);
        self.local_position.reserve(additional);
        self.loss.reserve(additional);
        self.timestep.reserve(additional);
    }

    /// Append the positions of another single-sequence batch (patches renumbered).
    pub fn extend_single(&mut self, other: &TokenBatch) -> Result<()> {
        let len = other.lengths.first().copied().unwrap_or(0);
        // A batch that is exactly one unpadded sequence (every pushed token or observation) is read as it is.
        let all = if other.batch == 1 && other.seq_len == len && other.patch_positions.is_empty() {
            std::borrow::Cow::Borrowed(other)
        } else {
            std::borrow::Cow::Owned(other.slice_single(0..len)?)
        };
        if self.batch == 0 {
            // Start an empty sequence, keeping whatever capacity was reserved.
            self.batch = 1;
            self.seq_len = 0;
            self.lengths = vec![0];
            self.ids.clear();
            self.timestep.clear();
            self.modality.clear();
            self.local_position.clear();
            self.loss.clear();
            self.patches.clear();
            self.patch_positions.clear();
        }
        let offset = self.patch_positions.len() as u32;
        for i in 0..all.seq_len {
            let id = if all.modality[i] == Modality::Image {
                all.ids[i] + offset
            } else {
                all.ids[i]
            };
            self.ids.push(id);
            self.modality.push(all.modality[i]);
            self.local_position.push(all.local_position[i]);
            self.loss.push(all.loss[i]);
            self.timestep.push(all.timestep[i]);
        }
        self.patches.extend_from_slice(&all.patches);
        self.patch_positions.extend_from_slice(&all.patch_positions);
        self.seq_len += all.seq_len;
        self.lengths[0] += all.seq_len;
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

    /// The gradients of this contribution's parameters, by name, given `dy` (`[B, T, width]`), the gradient of
    /// the summed input embedding: what training needs (design.md §8). A contribution recomputes what its
    /// forward computed in `mode` (the same seed draws the same patch positions). The default: not implemented.
    fn backward(
        &self,
        backend: &dyn Backend,
        batch: &TokenBatch,
        mode: EmbeddingMode,
        dy: &Tensor,
    ) -> Result<Vec<(String, Tensor)>> {
        let _ = (backend, batch, mode, dy);
        Err(crate::error::Error::Unsupported {
            backend: self.name().to_string(),
            op: "Embedding::backward",
        })
    }

    /// Whether the contribution can be non-zero anywhere in `batch`. `false` lets the caller skip
    /// [`Embedding::forward`], whose result would be all zeros (e.g. the image contributions for a batch without
    /// image patches — every decoded action token). The default, `true`, always runs it.
    fn applies_to(&self, batch: &TokenBatch) -> bool {
        let _ = batch;
        true
    }
}
