//! Softmax and attention ([`gato_core::AttentionOps`]): causal attention is one fused kernel with an online
//! softmax (one warp per query row), so the `T × T` score matrix is never materialised.

use cudarc::driver::{LaunchConfig, PushKernelArg};
use gato_core::{ops, AttentionOps, AttentionSpec, Error, Result, Shape, Tensor};

use crate::backend::*;
use crate::storage::CudaStorage;

impl AttentionOps for CudaBackend {
    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        softmax_impl(self, x, false)
    }
    fn log_softmax(&self, x: &Tensor) -> Result<Tensor> {
        softmax_impl(self, x, true)
    }
    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        spec: &AttentionSpec,
    ) -> Result<Tensor> {
        const OP: &str = "attention";
        let d = ops::attention_dims(q.shape(), k.shape(), v.shape(), spec)?;
        if d.dv > 32 * 8 {
            return Err(Error::shape(
                OP,
                format!("value size {} exceeds the fused kernel's 256", d.dv),
            ));
        }
        let (qv, kv, vv) = (
            self.f32s(OP, "q", q)?,
            self.f32s(OP, "k", k)?,
            self.f32s(OP, "v", v)?,
        );
        let rows = d.b * d.h * d.tq;
        let mut o = self.alloc(OP, rows * d.dv)?;
        if rows * d.dv > 0 {
            let f = self.function("attention_f32")?;
            let lens: Vec<i32> = spec
                .kv_len
                .as_ref()
                .map(|l| l.iter().map(|&x| x as i32).collect())
                .unwrap_or_else(|| vec![d.tk as i32; d.b]);
            let lens = self.stream.clone_htod(&lens).map_err(|e| err(OP, e))?;
            let (h, tq, tk, dd, dv) = (
                d.h as i32,
                d.tq as i32,
                d.tk as i32,
                d.d as i32,
                d.dv as i32,
            );
            let (causal, off, r) = (i32::from(spec.causal), spec.q_offset as i32, rows as i64);
            let cfg = LaunchConfig {
                grid_dim: ((rows * 32).div_ceil(128) as u32, 1, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: one warp per query row; all indices bounded by the checked dims.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(qv)
                    .arg(kv)
                    .arg(vv)
                    .arg(&mut o)
                    .arg(&h)
                    .arg(&tq)
                    .arg(&tk)
                    .arg(&dd)
                    .arg(&dv)
                    .arg(&spec.scale)
                    .arg(&causal)
                    .arg(&off)
                    .arg(&lens)
                    .arg(&r)
                    .launch(cfg)
            }
            .map_err(|e| err(OP, e))?;
        }
        Ok(self.wrap(Shape::new([d.b, d.h, d.tq, d.dv]), CudaStorage::F32(o)))
    }
}

fn softmax_impl(be: &CudaBackend, x: &Tensor, log: bool) -> Result<Tensor> {
    const OP: &str = "softmax";
    let d = x.shape().last_dim(OP)?;
    let xv = be.f32s(OP, "x", x)?;
    let n = x.elem_count();
    let rows = n.checked_div(d).unwrap_or(0);
    let mut y = be.alloc(OP, n)?;
    if n > 0 {
        let f = be.function("softmax_f32")?;
        let (r, dd, lg) = (rows as i64, d as i32, i32::from(log));
        // SAFETY: one block per row of d values.
        unsafe {
            be.stream
                .launch_builder(&f)
                .arg(xv)
                .arg(&mut y)
                .arg(&r)
                .arg(&dd)
                .arg(&lg)
                .launch(per_row(rows, 256))
        }
        .map_err(|e| err(OP, e))?;
    }
    Ok(be.wrap(x.shape().clone(), CudaStorage::F32(y)))
}
