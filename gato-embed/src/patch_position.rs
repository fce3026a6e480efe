//! `PatchPositionEncoding` (App. C.3): 128 row and 128 column buckets, two learned tables. A patch's normalised
//! interval `[a, b)` is quantised to buckets `[lo, hi)` in integers (SPEC §5, [`gato_core::bucket_range`]);
//! training draws a uniform index in `[lo, hi)`, evaluation uses `(lo + hi) / 2`. The row and column embeddings
//! are added.

use gato_core::{
    bucket_range, Backend, BinaryOp, Embedding, EmbeddingMode, GatoConfig, HostSlice, Init,
    Modality, ParamSource, Result, Shape, Tensor, TokenBatch, PAD_ID,
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
    pub fn indices(&self, batch: &TokenBatch, mode: EmbeddingMode) -> (Vec<u32>, Vec<u32>) {
        let mut rng = match mode {
            EmbeddingMode::Train { seed } => Some(StdRng::seed_from_u64(seed)),
            EmbeddingMode::Eval => None,
        };
        let mut pick = |(lo, hi): (u32, u32)| match rng.as_mut() {
            Some(r) => r.random_range(lo..hi),
            None => (lo + hi) / 2,
        };
        let n = batch.batch * batch.seq_len;
        let (mut r, mut c) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for b in 0..batch.batch {
            for t in 0..batch.seq_len {
                let i = b * batch.seq_len + t;
                if t < batch.lengths[b] && batch.modality[i] == Modality::Image {
                    let p = batch.patch_positions[batch.ids[i] as usize];
                    r.push(pick(bucket_range(p.row, p.rows, self.buckets)));
                    c.push(pick(bucket_range(p.col, p.cols, self.buckets)));
                } else {
                    r.push(PAD_ID);
                    c.push(PAD_ID);
                }
            }
        }
        (r, c)
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
        let shape = Shape::from([batch.batch, batch.seq_len]);
        let re = backend.embedding(&self.rows, &backend.upload(HostSlice::U32(&r), &shape)?)?;
        let ce = backend.embedding(&self.cols, &backend.upload(HostSlice::U32(&c), &shape)?)?;
        backend.binary(BinaryOp::Add, &re, &ce)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![
            (PATCH_ROW_PARAM.to_string(), self.rows.clone()),
            (PATCH_COL_PARAM.to_string(), self.cols.clone()),
        ]
    }
}
