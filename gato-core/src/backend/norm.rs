//! Normalisation: the decoder's pre-LayerNorm (App. C.1) and the patch embedding's GroupNorm (App. C.2).

use crate::error::Result;
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
}
