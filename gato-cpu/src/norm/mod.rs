//! LayerNorm and GroupNorm ([`gato_core::NormOps`]); kernels in `kernels`.

pub(crate) mod kernels;

use gato_core::error::Result;
use gato_core::ops;
use gato_core::tensor::Tensor;
use gato_core::NormOps;

use crate::CpuBackend;

impl NormOps for CpuBackend {
    fn layer_norm(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Tensor> {
        const OP: &str = "layer_norm";
        let (_, d) = ops::layer_norm_dims(x.shape(), gamma.shape(), beta.shape())?;
        let (xv, g, b) = (
            self.f32s(OP, "x", x)?,
            self.f32s(OP, "gamma", gamma)?,
            self.f32s(OP, "beta", beta)?,
        );
        self.compute_f32(OP, x.shape().clone(), |out| {
            kernels::layer_norm(xv, d, g, b, eps, out)
        })
    }
    fn group_norm(
        &self,
        x: &Tensor,
        groups: usize,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<Tensor> {
        const OP: &str = "group_norm";
        let d = ops::group_norm_dims(x.shape(), groups, gamma.shape(), beta.shape())?;
        let (xv, g, b) = (
            self.f32s(OP, "x", x)?,
            self.f32s(OP, "gamma", gamma)?,
            self.f32s(OP, "beta", beta)?,
        );
        self.compute_f32(OP, x.shape().clone(), |out| {
            kernels::group_norm(xv, &d, g, b, eps, out)
        })
    }
}
