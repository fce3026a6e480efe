//! LayerNorm and GroupNorm ([`gato_core::NormOps`]); kernels in `kernels`.

pub(crate) mod backward;
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
        let column = |pick: fn(&(f32, f32)) -> f32| {
            self.compute_f32(OP, gato_core::Shape::new([rows]), |out| {
                out.iter_mut().zip(&stats).for_each(|(o, s)| *o = pick(s))
            })
        };
        Ok((y, column(|s| s.0)?, column(|s| s.1)?))
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
        let (m, r) = (self.f32s(OP, "mean", mean)?, self.f32s(OP, "rstd", rstd)?);
        let stats: Vec<(f32, f32)> = m.iter().copied().zip(r.iter().copied()).collect();
        let dx = self.compute_f32(OP, x.shape().clone(), |out| {
            backward::layer_norm_dx(xv, gv, d, w, &stats, out)
        })?;
        let mut dbeta = vec![0f32; d];
        let dgamma = self.compute_f32(OP, gato_core::Shape::new([d]), |out| {
            backward::layer_norm_dparams(xv, gv, d, &stats, out, &mut dbeta)
        })?;
        let dbeta = self.compute_f32(OP, gato_core::Shape::new([d]), |out| {
            out.copy_from_slice(&dbeta)
        })?;
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
        let column = |pick: fn(&(f32, f32)) -> f32| {
            self.compute_f32(OP, gato_core::Shape::new([d.n, groups]), |out| {
                out.iter_mut().zip(&stats).for_each(|(o, s)| *o = pick(s))
            })
        };
        Ok((y, column(|s| s.0)?, column(|s| s.1)?))
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
        let (m, r) = (self.f32s(OP, "mean", mean)?, self.f32s(OP, "rstd", rstd)?);
        let stats: Vec<(f32, f32)> = m.iter().copied().zip(r.iter().copied()).collect();
        let (mut dg, mut db) = (vec![0f32; d.c], vec![0f32; d.c]);
        let dx = self.compute_f32(OP, x.shape().clone(), |out| {
            backward::group_norm_backward(xv, gv, &d, w, &stats, out, &mut dg, &mut db)
        })?;
        let vector = |v: &[f32]| {
            self.compute_f32(OP, gato_core::Shape::new([d.c]), |o| o.copy_from_slice(v))
        };
        Ok((dx, vector(&dg)?, vector(&db)?))
    }
}
