//! LayerNorm and GroupNorm ([`gato_core::NormOps`]): one block per row or group, block-reduced statistics.

use cudarc::driver::PushKernelArg;
use gato_core::{ops, NormOps, Result, Tensor};

use crate::backend::*;
use crate::storage::CudaStorage;

impl NormOps for CudaBackend {
    fn layer_norm(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Tensor> {
        const OP: &str = "layer_norm";
        let (rows, d) = ops::layer_norm_dims(x.shape(), gamma.shape(), beta.shape())?;
        let (xv, g, b) = (
            self.f32s(OP, "x", x)?,
            self.f32s(OP, "gamma", gamma)?,
            self.f32s(OP, "beta", beta)?,
        );
        let mut y = self.alloc(OP, rows * d)?;
        if rows * d > 0 {
            let f = self.function("layer_norm_f32")?;
            let (r, dd) = (rows as i64, d as i32);
            // SAFETY: one block per row of d values.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(xv)
                    .arg(g)
                    .arg(b)
                    .arg(&mut y)
                    .arg(&r)
                    .arg(&dd)
                    .arg(&eps)
                    .launch(per_row(rows, 256))
            }
            .map_err(|e| err(OP, e))?;
        }
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
        const OP: &str = "group_norm";
        let d = ops::group_norm_dims(x.shape(), groups, gamma.shape(), beta.shape())?;
        let (xv, g, b) = (
            self.f32s(OP, "x", x)?,
            self.f32s(OP, "gamma", gamma)?,
            self.f32s(OP, "beta", beta)?,
        );
        let n = x.elem_count();
        let mut y = self.alloc(OP, n)?;
        if n > 0 {
            let f = self.function("group_norm_f32")?;
            let (gg, cg, hw) = (groups as i32, (d.c / groups) as i32, d.hw as i64);
            // SAFETY: one block per (image, group) of cg·hw contiguous values.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(xv)
                    .arg(g)
                    .arg(b)
                    .arg(&mut y)
                    .arg(&gg)
                    .arg(&cg)
                    .arg(&hw)
                    .arg(&eps)
                    .launch(per_row(d.n * groups, 256))
            }
            .map_err(|e| err(OP, e))?;
        }
        Ok(self.wrap(x.shape().clone(), CudaStorage::F32(y)))
    }
}
