//! The one mechanism every contribution uses (§2.2): pick a table row per position — `PAD_ID` (a zero row) where the
//! contribution does not apply or the position is padding — and gather `[B, T, width]` with the backend's
//! embedding op.

use gato_core::{Backend, HostSlice, Result, Shape, Tensor, TokenBatch, PAD_ID};

/// Table rows, one per position; up to 64 positions (an observation, a decoded token) are held inline, so
/// acting allocates nothing here.
pub type PositionRows = smallvec::SmallVec<[u32; 64]>;

/// Row index per position of the batch: `row(i)` for real positions, `PAD_ID` for padding or where it is `None`.
pub(crate) fn position_rows(
    batch: &TokenBatch,
    mut row: impl FnMut(usize) -> Result<Option<u32>>,
) -> Result<PositionRows> {
    let mut ids = PositionRows::with_capacity(batch.batch * batch.seq_len);
    for b in 0..batch.batch {
        for t in 0..batch.seq_len {
            let i = b * batch.seq_len + t;
            let r = if t < batch.lengths[b] { row(i)? } else { None };
            ids.push(r.unwrap_or(PAD_ID));
        }
    }
    Ok(ids)
}

/// Gather `table` rows at `rows` (one per position) into `[B, T, width]`.
pub(crate) fn gather(
    backend: &dyn Backend,
    table: &Tensor,
    batch: &TokenBatch,
    rows: &[u32],
) -> Result<Tensor> {
    let ids = backend.upload(
        HostSlice::U32(rows),
        &Shape::from([batch.batch, batch.seq_len]),
    )?;
    backend.embedding(table, &ids)
}

/// The backward of [`gather`]: the `[V, D]` gradient of `table` from `dy` (`[B, T, D]`), each position's row added
/// into row `rows[i]` (`PAD_ID` positions add nothing).
pub(crate) fn gather_backward(
    backend: &dyn Backend,
    vocab: usize,
    batch: &TokenBatch,
    rows: &[u32],
    dy: &Tensor,
) -> Result<Tensor> {
    let ids = backend.upload(
        HostSlice::U32(rows),
        &Shape::from([batch.batch, batch.seq_len]),
    )?;
    backend.embedding_backward(&ids, dy, vocab)
}
