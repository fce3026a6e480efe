//! LayerNorm and GroupNorm ([`gato_core::NormOps`]); kernels in `kernels`.

pub(crate) mod backward;
pub(crate) mod kernels;

use gato_core::dtype::HostSlice;
use gato_core::error::Result;
use gato_core::ops;
use gato_core::shape::Shape;
use gato_core::tensor::Tensor;
use gato_core::MemoryOps;
use gato_core::NormOps;

use crate::CpuBackend;

impl CpuBackend {
    /// The per-row (or per-group) statistics a train forward saves, as a `mean` and an `rstd` tensor of `shape`.
    fn stats_tensors(&self, stats: &[(f32, f32)], shape: Shape) -> Result<(Tensor, Tensor)> {
        let (mean, rstd): (Vec<f32>, Vec<f32>) = stats.iter().copied().unzip();
        Ok((
            self.upload(HostSlice::F32(&mean), &shape)?,
            self.upload(HostSlice::F32(&rstd), &shape)?,
        ))
    }

    /// Saved statistics back as `(mean, rstd)` pairs.
    fn stats_of(&self, op: &'static str, mean: &Tensor, rstd: &Tensor) -> Result<Vec<(f32, f32)>> {
        let (m, r) = (self.f32s(op, "mean", mean)?, self.f32s(op, "rstd", rstd)?);
        Ok(m.iter().copied().zip(r.iter().copied()).collect())
    }
}

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

    fn layer_norm_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "layer_norm_train";
        let (rows, d) = ops::layer_norm_dims(x.shape(), gamma.shape(), beta.shape())?;
        let xv = self.f32s(OP, "x", x)?;
        let y = self.layer_norm(x, gamma, beta, eps)?;
        let stats = self.run(|| backward::layer_norm_stats(xv, d, eps));
        let (mean, rstd) = self.stats_tensors(&stats, [rows].into())?;
        Ok((y, mean, rstd))
    }

    fn layer_norm_backward(
        &self,
        dy: &Tensor,
        x: &Tensor,
        gamma: &Tensor,
        mean: &Tensor,
        rstd: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "layer_norm_backward";
        let (_, d) = ops::layer_norm_backward_dims(
            dy.shape(),
            x.shape(),
            gamma.shape(),
            mean.shape(),
            rstd.shape(),
        )?;
        let (xv, gv, w) = (
            self.f32s(OP, "x", x)?,
            self.f32s(OP, "dy", dy)?,
            self.f32s(OP, "gamma", gamma)?,
        );
        let stats = self.stats_of(OP, mean, rstd)?;
        let dx = self.compute_f32(OP, x.shape().clone(), |out| {
            backward::layer_norm_dx(xv, gv, d, w, &stats, out)
        })?;
        let mut dbeta = vec![0f32; d];
        let dgamma = self.compute_f32(OP, gato_core::Shape::new([d]), |out| {
            backward::layer_norm_dparams(xv, gv, d, &stats, out, &mut dbeta)
        })?;
        let dbeta = self.upload(HostSlice::F32(&dbeta), &[d].into())?;
        Ok((dx, dgamma, dbeta))
    }

    fn group_norm_train(
        &self,
        x: &Tensor,
        groups: usize,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "group_norm_train";
        let d = ops::group_norm_dims(x.shape(), groups, gamma.shape(), beta.shape())?;
        let y = self.group_norm(x, groups, gamma, beta, eps)?;
        let xv = self.f32s(OP, "x", x)?;
        let stats = self.run(|| backward::group_norm_stats(xv, d.c / d.groups * d.hw, eps));
        let (mean, rstd) = self.stats_tensors(&stats, [d.n, groups].into())?;
        Ok((y, mean, rstd))
    }

    fn group_norm_backward(
        &self,
        dy: &Tensor,
        x: &Tensor,
        groups: usize,
        gamma: &Tensor,
        mean: &Tensor,
        rstd: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "group_norm_backward";
        let d = ops::group_norm_backward_dims(
            dy.shape(),
            x.shape(),
            groups,
            gamma.shape(),
            mean.shape(),
            rstd.shape(),
        )?;
        let (xv, gv, w) = (
            self.f32s(OP, "x", x)?,
            self.f32s(OP, "dy", dy)?,
            self.f32s(OP, "gamma", gamma)?,
        );
        let stats = self.stats_of(OP, mean, rstd)?;
        let (mut dg, mut db) = (vec![0f32; d.c], vec![0f32; d.c]);
        let dx = self.compute_f32(OP, x.shape().clone(), |out| {
            backward::group_norm_backward(xv, gv, &d, w, &stats, out, &mut dg, &mut db)
        })?;
        let c: Shape = [d.c].into();
        Ok((
            dx,
            self.upload(HostSlice::F32(&dg), &c)?,
            self.upload(HostSlice::F32(&db), &c)?,
        ))
    }
}
