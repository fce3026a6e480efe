//! `PatchPositionEncoding` (App. C.3): 128 row and 128 column buckets, two learned tables. A patch's normalised
//! interval `[a, b)` is quantised to buckets `[lo, hi)` in integers (design.md §5, [`crate::bucket_range`]);
//! training draws a uniform index in `[lo, hi)`, evaluation uses `(lo + hi) / 2`. The row and column embeddings
//! are added.

use crate::bucket_range;
use crate::gather::{gather, position_rows, PositionRows};
use gato_core::{
    Backend, BinaryOp, Embedding, EmbeddingMode, GatoConfig, Init, Modality, ParamSource, Result,
    Shape, Tensor, TokenBatch, PAD_ID,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Parameter names of the two tables.
pub const PATCH_ROW_PARAM: &str = "embed.patch_position.rows";
/// See [`PATCH_ROW_PARAM`].
pub const PATCH_COL_PARAM: &str = "embed.patch_position.cols";

/// Row and column bucket tables.
pub struct PatchPositionEncoding {
    rows: Tensor,
    cols: Tensor,
    buckets: u32,
}

impl PatchPositionEncoding {
    /// Two tables `[position_buckets, width]`.
    pub fn new(src: &mut dyn ParamSource, config: &GatoConfig) -> Result<Self> {
        let shape = Shape::from([config.position_buckets, config.layer_width]);
        Ok(PatchPositionEncoding {
            rows: src.param(PATCH_ROW_PARAM, &shape, Init::Normal(0.02))?,
            cols: src.param(PATCH_COL_PARAM, &shape, Init::Normal(0.02))?,
            buckets: config.position_buckets as u32,
        })
    }

    /// The (row, column) bucket index of every position (`PAD_ID` for non-patches).
    pub fn indices(&self, batch: &TokenBatch, mode: EmbeddingMode) -> (PositionRows, PositionRows) {
        let mut rng = match mode {
            EmbeddingMode::Train { seed } => Some(StdRng::seed_from_u64(seed)),
            EmbeddingMode::Eval => None,
        };
        let mut pick = |(lo, hi): (u32, u32)| match rng.as_mut() {
            Some(r) => r.random_range(lo..hi),
            None => (lo + hi) / 2,
        };
        // Row bucket per position through the shared helper; the column bucket of the same position alongside.
        let mut cols: PositionRows = smallvec::smallvec![PAD_ID; batch.batch * batch.seq_len];
        let rows = position_rows(batch, |i| {
            if batch.modality[i] != Modality::Image {
                return Ok(None);
            }
            let p = batch.patch_positions[batch.ids[i] as usize];
            let row = pick(bucket_range(p.row, p.rows, self.buckets));
            cols[i] = pick(bucket_range(p.col, p.cols, self.buckets));
            Ok(Some(row))
        });
        (rows.unwrap_or_default(), cols)
    }
}

impl Embedding for PatchPositionEncoding {
    fn name(&self) -> &str {
        "patch_position"
    }

    fn forward(
        &self,
        backend: &dyn Backend,
        batch: &TokenBatch,
        mode: EmbeddingMode,
    ) -> Result<Tensor> {
        let (r, c) = self.indices(batch, mode);
        let re = gather(backend, &self.rows, batch, &r)?;
        let ce = gather(backend, &self.cols, batch, &c)?;
        backend.binary(BinaryOp::Add, &re, &ce)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            (PATCH_ROW_PARAM.to_string(), self.rows.clone()),
            (PATCH_COL_PARAM.to_string(), self.cols.clone()),
        ]
    }

    fn backward(
        &self,
        backend: &dyn Backend,
        batch: &TokenBatch,
        mode: EmbeddingMode,
        dy: &Tensor,
    ) -> Result<Vec<(String, Tensor)>> {
        let (r, c) = self.indices(batch, mode);
        let buckets = self.rows.dims()[0];
        Ok(vec![
            (
                PATCH_ROW_PARAM.to_string(),
                crate::gather::gather_backward(backend, buckets, batch, &r, dy)?,
            ),
            (
                PATCH_COL_PARAM.to_string(),
                crate::gather::gather_backward(backend, buckets, batch, &c, dy)?,
            ),
        ])
    }

    /// Only image patches get this contribution.
    fn applies_to(&self, batch: &TokenBatch) -> bool {
        batch.modality.contains(&Modality::Image)
    }
}
