//! Normalisation: the decoder's pre-LayerNorm (App. C.1) and the patch embedding's GroupNorm (App. C.2).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Normalisation ops (a family of [`super::Backend`]). Statistics are summed pairwise or in blocks
/// (`docs/design.md` §10).
pub trait NormOps {
    /// LayerNorm over the last dim: `(x − mean)/√(var + eps) · gamma + beta`, biased variance.
    fn layer_norm(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Tensor>;

    /// GroupNorm on NCHW input: channels split into `groups` groups, each normalised over (channels of the group,
    /// H, W), then per-channel `gamma`/`beta` (App. C.2).
    fn group_norm(
        &self,
        x: &Tensor,
        groups: usize,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<Tensor>;

    // ---- backward (training, design.md §8); defaults: not implemented by this backend ----

    /// [`NormOps::layer_norm`] that also returns what its backward needs: `(y, mean, rstd)`, the last two `[rows]`
    /// (one per row of the last dim; `rstd = 1/√(var + eps)`).
    fn layer_norm_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let _ = (x, gamma, beta, eps);
        Err(Error::Unsupported {
            backend: std::any::type_name::<Self>().to_string(),
            op: "layer_norm_train",
        })
    }

    /// [`NormOps::group_norm`] that also returns what its backward needs: `(y, mean, rstd)`, the last two
    /// `[N, groups]`.
    fn group_norm_train(
        &self,
        x: &Tensor,
        groups: usize,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let _ = (x, groups, gamma, beta, eps);
        Err(Error::Unsupported {
            backend: std::any::type_name::<Self>().to_string(),
            op: "group_norm_train",
        })
    }

    /// The backward of GroupNorm from the saved statistics: `(dx, dgamma, dbeta)`.
    fn group_norm_backward(
        &self,
        dy: &Tensor,
        x: &Tensor,
        groups: usize,
        gamma: &Tensor,
        mean: &Tensor,
        rstd: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let _ = (dy, x, groups, gamma, mean, rstd);
        Err(Error::Unsupported {
            backend: std::any::type_name::<Self>().to_string(),
            op: "group_norm_backward",
        })
    }

    /// The backward of LayerNorm from the saved statistics: `(dx, dgamma, dbeta)`.
    fn layer_norm_backward(
        &self,
        dy: &Tensor,
        x: &Tensor,
        gamma: &Tensor,
        mean: &Tensor,
        rstd: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let _ = (dy, x, gamma, mean, rstd);
        Err(Error::Unsupported {
            backend: std::any::type_name::<Self>().to_string(),
            op: "layer_norm_backward",
        })
    }
}
