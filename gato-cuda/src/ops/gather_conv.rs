//! Embedding gather and convolution ([`gato_core::GatherConvOps`]): ids are checked on the device and a bad id
//! is reported by the next download or synchronisation.

use cudarc::driver::PushKernelArg;
use gato_core::{ops, Conv2dSpec, Error, GatherConvOps, Result, Shape, Tensor};

use crate::backend::*;
use crate::storage::CudaStorage;

impl GatherConvOps for CudaBackend {
    fn embedding(&self, table: &Tensor, ids: &Tensor) -> Result<Tensor> {
        const OP: &str = "embedding";
        let (v, d, shape) = ops::embedding_dims(table.shape(), ids.shape())?;
        let t = self.f32s(OP, "table", table)?;
        let id_slice = match self.storage(OP, ids)? {
            CudaStorage::U32(s) => s,
            other => {
                return Err(Error::DType {
                    op: OP,
                    detail: format!("`ids` has dtype {}, expected u32", other.dtype()),
                })
            }
        };
        // Range check on the device (no host round trip per call): the kernel flags the first bad id and the
        // error is raised at the next download or synchronize.
        let n = ids.elem_count();
        let mut y = self.alloc(OP, n * d)?;
        if n * d > 0 {
            let mut flag = self.stream.alloc_zeros::<u64>(1).map_err(|e| err(OP, e))?;
            let f = self.function("embedding_f32")?;
            let (nn, dd, vv) = (n as i64, d as i32, v.min(u32::MAX as usize) as u32);
            // SAFETY: the kernel reads a table row only for ids below V; y holds n·d; flag holds one u64.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(t)
                    .arg(id_slice)
                    .arg(&mut y)
                    .arg(&nn)
                    .arg(&dd)
                    .arg(&vv)
                    .arg(&mut flag)
                    .launch(grid(n * d))
            }
            .map_err(|e| err(OP, e))?;
            self.defer_id_check(OP, flag, ids, v, false)?;
        }
        Ok(self.wrap(shape, CudaStorage::F32(y)))
    }
    fn conv2d(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        spec: &Conv2dSpec,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d";
        let d = ops::conv2d_dims(x.shape(), w.shape(), bias.map(|b| b.shape()), spec)?;
        let (xv, wv) = (self.f32s(OP, "x", x)?, self.f32s(OP, "w", w)?);
        let p = d.oh * d.ow;
        let ck = d.c * d.kh * d.kw;
        let mut out = self.alloc(OP, d.n * d.o * p)?;
        if d.n * d.o * p > 0 {
            let im2col = self.function("im2col_f32")?;
            let mut cols = self.alloc(OP, ck * p)?;
            let img = d.c * d.h * d.w;
            let args = [d.c, d.h, d.w, d.kh, d.kw, d.oh, d.ow, d.stride, d.pad].map(|v| v as i32);
            for i in 0..d.n {
                let xi = xv.slice(i * img..(i + 1) * img);
                let mut l = self.stream.launch_builder(&im2col);
                l.arg(&xi).arg(&mut cols);
                for a in &args {
                    l.arg(a);
                }
                // SAFETY: one image in, C·kh·kw × OH·OW columns out.
                unsafe { l.launch(grid(ck * p)) }.map_err(|e| err(OP, e))?;
                let mut yi = out.slice_mut(i * d.o * p..(i + 1) * d.o * p);
                // y_i [O, P] = W [O, CK] · cols [CK, P].
                self.gemm_rm(OP, (wv, false), (&cols, false), &mut yi, (d.o, p, ck), 0.0)?;
            }
            if let Some(b) = bias {
                let bv = self.f32s(OP, "bias", b)?;
                let f = self.function("add_channel_bias_f32")?;
                let (total, o, pp) = ((d.n * d.o * p) as i64, d.o as i32, p as i64);
                // SAFETY: y holds N·O·P, bias O.
                unsafe {
                    self.stream
                        .launch_builder(&f)
                        .arg(&mut out)
                        .arg(bv)
                        .arg(&total)
                        .arg(&o)
                        .arg(&pp)
                        .launch(grid(d.n * d.o * p))
                }
                .map_err(|e| err(OP, e))?;
            }
        }
        Ok(self.wrap(Shape::new([d.n, d.o, d.oh, d.ow]), CudaStorage::F32(out)))
    }

    fn embedding_backward(&self, ids: &Tensor, dy: &Tensor, vocab: usize) -> Result<Tensor> {
        const OP: &str = "embedding_backward";
        let d = ops::embedding_backward_dims(ids.shape(), dy.shape(), vocab)?;
        let (idv, dyv) = (self.u32s(OP, "ids", ids)?, self.f32s(OP, "dy", dy)?);
        let n = ids.elem_count();
        let mut out = self.alloc(OP, vocab * d)?;
        if n * d > 0 {
            if vocab > i32::MAX as usize || n > i32::MAX as usize {
                return Err(Error::shape(
                    OP,
                    format!("{n} ids over a vocabulary of {vocab}: the CUDA kernel indexes both with i32"),
                ));
            }
            // Deterministic: each id's rows added in position order (kernels_backward.cu, four steps).
            let e = |x| err(OP, x);
            let mut flag = self.stream.alloc_zeros::<u64>(1).map_err(e)?;
            let mut rank = self.stream.alloc_zeros::<i32>(n).map_err(e)?;
            let mut counts = self.stream.alloc_zeros::<i32>(vocab).map_err(e)?;
            let mut offsets = self.stream.alloc_zeros::<i32>(vocab + 1).map_err(e)?;
            let mut order = self.stream.alloc_zeros::<i32>(n).map_err(e)?;
            let (nn, vv, v32, dd) = (n as i64, vocab as u32, vocab as i32, d as i32);
            let f = self.function("embedding_rank_u32")?;
            // SAFETY: ids, rank hold n values, counts `vocab`; counts are written only for ids below vocab.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(idv)
                    .arg(&mut rank)
                    .arg(&mut counts)
                    .arg(&nn)
                    .arg(&vv)
                    .arg(&mut flag)
                    .launch(grid(n))
            }
            .map_err(e)?;
            let f = self.function("exclusive_scan_i32")?;
            // SAFETY: one block of 1024 threads scans `vocab` counts into vocab + 1 offsets.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(&counts)
                    .arg(&mut offsets)
                    .arg(&v32)
                    .launch(per_row(1, 1024))
            }
            .map_err(e)?;
            let f = self.function("embedding_order_u32")?;
            // SAFETY: offsets[id] + rank < n for every valid position, by construction of the scan.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(idv)
                    .arg(&rank)
                    .arg(&offsets)
                    .arg(&mut order)
                    .arg(&nn)
                    .launch(grid(n))
            }
            .map_err(e)?;
            let f = self.function("embedding_gather_grad_f32")?;
            // SAFETY: one block per id; order holds positions below n, dy holds n·d values, out vocab·d.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(dyv)
                    .arg(&offsets)
                    .arg(&order)
                    .arg(&mut out)
                    .arg(&dd)
                    .launch(per_row(vocab, 256))
            }
            .map_err(e)?;
            self.defer_id_check(OP, flag, ids, vocab, false)?;
        }
        Ok(self.wrap(Shape::new([vocab, d]), CudaStorage::F32(out)))
    }

    fn conv2d_backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        dy: &Tensor,
        spec: &Conv2dSpec,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "conv2d_backward";
        let d = ops::conv2d_backward_dims(x.shape(), w.shape(), dy.shape(), spec)?;
        let (xv, wv, dyv) = (
            self.f32s(OP, "x", x)?,
            self.f32s(OP, "w", w)?,
            self.f32s(OP, "dy", dy)?,
        );
        let p = d.oh * d.ow;
        let ck = d.c * d.kh * d.kw;
        let img = d.c * d.h * d.w;
        let mut dx = self.alloc(OP, d.n * img)?;
        let mut dw = self.alloc(OP, d.o * ck)?;
        if d.n * d.o * p > 0 && ck > 0 {
            let (im2col, col2im) = (self.function("im2col_f32")?, self.function("col2im_f32")?);
            let mut cols = self.alloc(OP, ck * p)?;
            let mut dcols = self.alloc(OP, ck * p)?;
            let args = [d.c, d.h, d.w, d.kh, d.kw, d.oh, d.ow, d.stride, d.pad].map(|v| v as i32);
            for i in 0..d.n {
                let dyi = dyv.slice(i * d.o * p..(i + 1) * d.o * p);
                // dcols [CK, P] = Wᵀ · dy_i, then back to the image's pixels.
                self.gemm_rm(OP, (wv, true), (&dyi, false), &mut dcols, (ck, p, d.o), 0.0)?;
                let mut dxi = dx.slice_mut(i * img..(i + 1) * img);
                let mut l = self.stream.launch_builder(&col2im);
                l.arg(&dcols).arg(&mut dxi);
                for a in &args {
                    l.arg(a);
                }
                // SAFETY: columns [CK, P] in, one image [C, H, W] out.
                unsafe { l.launch(grid(img)) }.map_err(|e| err(OP, e))?;
                // dW [O, CK] += dy_i · cols_iᵀ, the image's columns rebuilt.
                let xi = xv.slice(i * img..(i + 1) * img);
                let mut l = self.stream.launch_builder(&im2col);
                l.arg(&xi).arg(&mut cols);
                for a in &args {
                    l.arg(a);
                }
                // SAFETY: one image in, C·kh·kw × OH·OW columns out.
                unsafe { l.launch(grid(ck * p)) }.map_err(|e| err(OP, e))?;
                let beta = if i == 0 { 0.0 } else { 1.0 };
                self.gemm_rm(
                    OP,
                    (&dyi, false),
                    (&cols, true),
                    &mut dw,
                    (d.o, ck, p),
                    beta,
                )?;
            }
        }
        let db = self.channel_sums(OP, dyv, (d.n, d.o, p))?;
        Ok((
            self.wrap(x.shape().clone(), CudaStorage::F32(dx)),
            self.wrap(w.shape().clone(), CudaStorage::F32(dw)),
            self.wrap(Shape::new([d.o]), CudaStorage::F32(db)),
        ))
    }
}
