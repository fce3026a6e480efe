//! Concat, slice, permute and the KV cache's in-place write ([`gato_core::LayoutOps`]) as strided block copies.

use cudarc::driver::PushKernelArg;
use gato_core::{ops, Error, LayoutOps, Result, Shape, Tensor};

use crate::backend::*;
use crate::storage::CudaStorage;

impl LayoutOps for CudaBackend {
    fn concat(&self, xs: &[&Tensor], axis: usize) -> Result<Tensor> {
        const OP: &str = "concat";
        let shapes: Vec<&Shape> = xs.iter().map(|t| t.shape()).collect();
        let (shape, outer, blocks) = ops::concat_dims(&shapes, axis)?;
        let dtype = xs[0].dtype();
        if let Some((i, t)) = xs.iter().enumerate().find(|(_, t)| t.dtype() != dtype) {
            return Err(Error::DType {
                op: OP,
                detail: format!("tensor {i} has dtype {}, tensor 0 has {dtype}", t.dtype()),
            });
        }
        let row: usize = blocks.iter().sum();
        let mut out = self.empty_like(dtype, outer * row)?;
        let mut off = 0;
        for (t, &blk) in xs.iter().zip(&blocks) {
            self.block_copy(
                self.storage(OP, t)?,
                &mut out,
                Copy2d {
                    rows: outer,
                    src_row: blk,
                    src_off: 0,
                    dst_row: row,
                    dst_off: off,
                    count: blk,
                },
            )?;
            off += blk;
        }
        Ok(self.wrap(shape, out))
    }
    fn slice(&self, x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        const OP: &str = "slice";
        let (shape, outer, n, inner) = ops::slice_dims(x.shape(), axis, start, len)?;
        let src = self.storage(OP, x)?;
        let mut out = self.empty_like(x.dtype(), outer * len * inner)?;
        self.block_copy(
            src,
            &mut out,
            Copy2d {
                rows: outer,
                src_row: n * inner,
                src_off: start * inner,
                dst_row: len * inner,
                dst_off: 0,
                count: len * inner,
            },
        )?;
        Ok(self.wrap(shape, out))
    }
    fn slice_assign(
        &self,
        dst: &mut Tensor,
        src: &Tensor,
        axis: usize,
        start: usize,
    ) -> Result<()> {
        const OP: &str = "slice_assign";
        let (outer, n, len, inner) = ops::slice_assign_dims(dst, src, axis, start)?;
        let src_storage = self.storage(OP, src)?;
        let target = self.own(OP, dst)?;
        self.block_copy(
            src_storage,
            target,
            Copy2d {
                rows: outer,
                src_row: len * inner,
                src_off: 0,
                dst_row: n * inner,
                dst_off: start * inner,
                count: len * inner,
            },
        )
    }
    fn permute(&self, x: &Tensor, perm: &[usize]) -> Result<Tensor> {
        const OP: &str = "permute";
        let shape = ops::permute_dims(x.shape(), perm)?;
        let n = x.elem_count();
        let src = self.storage(OP, x)?;
        let mut out = self.empty_like(x.dtype(), n)?;
        if n > 0 {
            let in_dims = x.dims();
            let mut strides = vec![1i64; in_dims.len()];
            for i in (0..in_dims.len().saturating_sub(1)).rev() {
                strides[i] = strides[i + 1] * in_dims[i + 1] as i64;
            }
            let mut meta = vec![perm.len() as i64];
            meta.extend(shape.dims().iter().map(|&d| d as i64));
            meta.extend(perm.iter().map(|&p| strides[p]));
            let meta = self.stream.clone_htod(&meta).map_err(|e| err(OP, e))?;
            let nn = n as i64;
            macro_rules! go {
                ($name:literal, $s:expr, $d:expr) => {{
                    let f = self.function($name)?;
                    // SAFETY: every output index maps to an input index below n.
                    unsafe {
                        self.stream
                            .launch_builder(&f)
                            .arg($s)
                            .arg($d)
                            .arg(&nn)
                            .arg(&meta)
                            .launch(grid(n))
                    }
                    .map_err(|e| err(OP, e))?;
                }};
            }
            match (src, &mut out) {
                (CudaStorage::F32(s), CudaStorage::F32(d)) => go!("permute_f32", s, d),
                (CudaStorage::U32(s), CudaStorage::U32(d)) => go!("permute_b32", s, d),
                (CudaStorage::F16(s), CudaStorage::F16(d))
                | (CudaStorage::BF16(s), CudaStorage::BF16(d)) => go!("permute_b16", s, d),
                _ => return Err(err(OP, "mixed dtypes")),
            }
        }
        Ok(self.wrap(shape, out))
    }
}
