//! LayerNorm and GroupNorm ([`gato_core::NormOps`]): one block per row or group, block-reduced statistics; the
//! training forwards keep each row's (group's) mean and `rstd`, and the backwards read them. `dγ` and `dβ` are
//! column (channel) sums of `dy·x̂` and `dy`, reduced in a fixed order.

use cudarc::driver::{CudaSlice, PushKernelArg};
use gato_core::{ops, NormOps, Result, Shape, Tensor};

use crate::backend::*;
use crate::storage::CudaStorage;

/// `(y, mean, rstd)` as device buffers.
type Normed = (CudaSlice<f32>, CudaSlice<f32>, CudaSlice<f32>);

impl CudaBackend {
    /// LayerNorm of `rows` rows of `d`, with the statistics its backward needs.
    fn layer_norm_impl(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<(usize, Normed)> {
        const OP: &str = "layer_norm";
        let (rows, d) = ops::layer_norm_dims(x.shape(), gamma.shape(), beta.shape())?;
        let (xv, g, b) = (
            self.f32s(OP, "x", x)?,
            self.f32s(OP, "gamma", gamma)?,
            self.f32s(OP, "beta", beta)?,
        );
        let mut y = self.alloc(OP, rows * d)?;
        let (mut mean, mut rstd) = (self.alloc(OP, rows)?, self.alloc(OP, rows)?);
        if rows * d > 0 {
            let f = self.function("layer_norm_f32")?;
            let (r, dd) = (rows as i64, d as i32);
            // SAFETY: one block per row of d values; mean and rstd hold one value per row.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(xv)
                    .arg(g)
                    .arg(b)
                    .arg(&mut y)
                    .arg(&mut mean)
                    .arg(&mut rstd)
                    .arg(&r)
                    .arg(&dd)
                    .arg(&eps)
                    .launch(per_row(rows, 256))
            }
            .map_err(|e| err(OP, e))?;
        }
        Ok((rows, (y, mean, rstd)))
    }

    /// GroupNorm with its per-(image, group) statistics.
    fn group_norm_impl(
        &self,
        x: &Tensor,
        groups: usize,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<(usize, Normed)> {
        const OP: &str = "group_norm";
        let d = ops::group_norm_dims(x.shape(), groups, gamma.shape(), beta.shape())?;
        let (xv, g, b) = (
            self.f32s(OP, "x", x)?,
            self.f32s(OP, "gamma", gamma)?,
            self.f32s(OP, "beta", beta)?,
        );
        let n = x.elem_count();
        let blocks = d.n * groups;
        let mut y = self.alloc(OP, n)?;
        let (mut mean, mut rstd) = (self.alloc(OP, blocks)?, self.alloc(OP, blocks)?);
        if n > 0 {
            let f = self.function("group_norm_f32")?;
            let (gg, cg, hw) = (groups as i32, (d.c / groups) as i32, d.hw as i64);
            // SAFETY: one block per (image, group) of cg·hw contiguous values and one statistic each.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(xv)
                    .arg(g)
                    .arg(b)
                    .arg(&mut y)
                    .arg(&mut mean)
                    .arg(&mut rstd)
                    .arg(&gg)
                    .arg(&cg)
                    .arg(&hw)
                    .arg(&eps)
                    .launch(per_row(blocks, 256))
            }
            .map_err(|e| err(OP, e))?;
        }
        Ok((blocks, (y, mean, rstd)))
    }
}

impl NormOps for CudaBackend {
    fn layer_norm(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Tensor> {
        let (_, (y, _, _)) = self.layer_norm_impl(x, gamma, beta, eps)?;
        Ok(self.wrap(x.shape().clone(), CudaStorage::F32(y)))
    }
    fn group_norm(
        &self,
        x: &Tensor,
        groups: usize,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<Tensor> {
        let (_, (y, _, _)) = self.group_norm_impl(x, groups, gamma, beta, eps)?;
        Ok(self.wrap(x.shape().clone(), CudaStorage::F32(y)))
    }

    fn layer_norm_train(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (rows, (y, mean, rstd)) = self.layer_norm_impl(x, gamma, beta, eps)?;
        Ok((
            self.wrap(x.shape().clone(), CudaStorage::F32(y)),
            self.wrap(Shape::new([rows]), CudaStorage::F32(mean)),
            self.wrap(Shape::new([rows]), CudaStorage::F32(rstd)),
        ))
    }

    fn group_norm_train(
        &self,
        x: &Tensor,
        groups: usize,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (blocks, (y, mean, rstd)) = self.group_norm_impl(x, groups, gamma, beta, eps)?;
        let stats = Shape::new([blocks / groups.max(1), groups]);
        Ok((
            self.wrap(x.shape().clone(), CudaStorage::F32(y)),
            self.wrap(stats.clone(), CudaStorage::F32(mean)),
            self.wrap(stats, CudaStorage::F32(rstd)),
        ))
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
        let (rows, d) = ops::layer_norm_backward_dims(
            dy.shape(),
            x.shape(),
            gamma.shape(),
            mean.shape(),
            rstd.shape(),
        )?;
        let (dyv, xv, g) = (
            self.f32s(OP, "dy", dy)?,
            self.f32s(OP, "x", x)?,
            self.f32s(OP, "gamma", gamma)?,
        );
        let (mv, rv) = (self.f32s(OP, "mean", mean)?, self.f32s(OP, "rstd", rstd)?);
        let mut dx = self.alloc(OP, rows * d)?;
        let mut dy_xhat = self.alloc(OP, rows * d)?;
        if rows * d > 0 {
            let f = self.function("layer_norm_backward_f32")?;
            let (r, dd) = (rows as i64, d as i32);
            // SAFETY: one block per row of d values; statistics hold one value per row.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(dyv)
                    .arg(xv)
                    .arg(g)
                    .arg(mv)
                    .arg(rv)
                    .arg(&mut dx)
                    .arg(&mut dy_xhat)
                    .arg(&r)
                    .arg(&dd)
                    .launch(per_row(rows, 256))
            }
            .map_err(|e| err(OP, e))?;
        }
        let dgamma = self.column_sums(OP, &dy_xhat, rows, d)?;
        let dbeta = self.column_sums(OP, dyv, rows, d)?;
        Ok((
            self.wrap(x.shape().clone(), CudaStorage::F32(dx)),
            self.wrap(Shape::new([d]), CudaStorage::F32(dgamma)),
            self.wrap(Shape::new([d]), CudaStorage::F32(dbeta)),
        ))
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
        let (dyv, xv, g) = (
            self.f32s(OP, "dy", dy)?,
            self.f32s(OP, "x", x)?,
            self.f32s(OP, "gamma", gamma)?,
        );
        let (mv, rv) = (self.f32s(OP, "mean", mean)?, self.f32s(OP, "rstd", rstd)?);
        let n = x.elem_count();
        let mut dx = self.alloc(OP, n)?;
        let mut dy_xhat = self.alloc(OP, n)?;
        if n > 0 {
            let f = self.function("group_norm_backward_f32")?;
            let (gg, cg, hw) = (groups as i32, (d.c / groups) as i32, d.hw as i64);
            // SAFETY: one block per (image, group) of cg·hw contiguous values, one statistic each.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(dyv)
                    .arg(xv)
                    .arg(g)
                    .arg(mv)
                    .arg(rv)
                    .arg(&mut dx)
                    .arg(&mut dy_xhat)
                    .arg(&gg)
                    .arg(&cg)
                    .arg(&hw)
                    .launch(per_row(d.n * groups, 256))
            }
            .map_err(|e| err(OP, e))?;
        }
        let dgamma = self.channel_sums(OP, &dy_xhat, (d.n, d.c, d.hw))?;
        let dbeta = self.channel_sums(OP, dyv, (d.n, d.c, d.hw))?;
        Ok((
            self.wrap(x.shape().clone(), CudaStorage::F32(dx)),
            self.wrap(Shape::new([d.c]), CudaStorage::F32(dgamma)),
            self.wrap(Shape::new([d.c]), CudaStorage::F32(dbeta)),
        ))
    }
}
