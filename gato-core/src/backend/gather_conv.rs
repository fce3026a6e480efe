//! Gathers and convolutions: the shared embedding table's lookup (paper §2.2) and the ResNet patch embedding's
//! convolutions (App. C.2).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Options of a 2-D convolution (NCHW, weights `[O, C, kh, kw]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dSpec {
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

impl Default for Conv2dSpec {
    fn default() -> Self {
        Conv2dSpec {
            stride: 1,
            padding: 0,
        }
    }
}

/// Embedding gather and convolution (a family of [`super::Backend`]).
pub trait GatherConvOps {
    /// Rows of `table: [V, D]` at `ids` (U32, any shape) → `[..ids, D]`. [`crate::ops::PAD_ID`] gathers a zero row;
    /// any other id ≥ V is an error naming it — returned by this call, or, by an asynchronous backend that checks
    /// ids on the device, by the next [`super::MemoryOps::download`] or [`super::MemoryOps::synchronize`] (no data
    /// is returned).
    fn embedding(&self, table: &Tensor, ids: &Tensor) -> Result<Tensor>;

    /// 2-D convolution, `x: [N, C, H, W]`, `w: [O, C, kh, kw]`, `bias: [O]` → `[N, O, H', W']`.
    fn conv2d(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        spec: &Conv2dSpec,
    ) -> Result<Tensor>;

    // ---- backward (training, design.md §8); defaults: not implemented by this backend ----

    /// The backward of [`GatherConvOps::conv2d`]: `(dx, dw, dbias)` for `dy` shaped like its output (`dbias`
    /// `[O]`, the gradient of a bias whether or not the forward had one).
    fn conv2d_backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
        spec: &Conv2dSpec,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let _ = (x, w, dy, spec);
        Err(Error::Unsupported {
            backend: std::any::type_name::<Self>().to_string(),
            op: "conv2d_backward",
        })
    }

    /// The backward of [`GatherConvOps::embedding`]: a `[vocab, D]` table gradient, each row of `dy`
    /// (`[..ids, D]`) added into its id's row (repeated ids accumulate; [`crate::ops::PAD_ID`] adds nothing). The
    /// shared table also feeds the tied output head, whose gradient the caller adds to this one.
    fn embedding_backward(&self, ids: &Tensor, dy: &Tensor, vocab: usize) -> Result<Tensor> {
        let _ = (ids, dy, vocab);
        Err(Error::Unsupported {
            backend: std::any::type_name::<Self>().to_string(),
            op: "embedding_backward",
        })
    }
}
