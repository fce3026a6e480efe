//! Layout: concatenation, slicing and permutation (attention heads), and the KV cache's in-place append.

use crate::error::Result;
use crate::tensor::Tensor;

/// Layout ops (a family of [`super::Backend`]).
pub trait LayoutOps {
    /// Concatenate along `axis`; all other dims must match.
    fn concat(&self, xs: &[&Tensor], axis: usize) -> Result<Tensor>;

    /// `x[.., start..start+len, ..]` along `axis`.
    fn slice(&self, x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor>;

    /// Reorder dims: output dim `i` is input dim `perm[i]` (materialised contiguously).
    fn permute(&self, x: &Tensor, perm: &[usize]) -> Result<Tensor>;

    /// Write `src` into `dst[.., start..start+len, ..]` along `axis` — the one op that writes into an existing
    /// tensor, so a KV cache appends a token without copying what it holds (`docs/design.md` §6). Copy-on-write:
    /// when other handles share `dst`'s storage, `dst` first gets its own copy, so no other handle ever sees the
    /// change. The default builds the result from `slice` and `concat` (always a copy); backends write in place.
    fn slice_assign(
        &self,
        dst: &mut Tensor,
        src: &Tensor,
        axis: usize,
        start: usize,
    ) -> Result<()> {
        let (_, n, len, _) = crate::ops::slice_assign_dims(dst, src, axis, start)?;
        let head = self.slice(dst, axis, 0, start)?;
        let tail = self.slice(dst, axis, start + len, n - start - len)?;
        *dst = self.concat(&[&head, src, &tail], axis)?;
        Ok(())
    }
}
