//! Embedding gather and convolution ([`gato_core::GatherConvOps`]): ids are checked on the device and a bad id
//! is reported by the next download or synchronisation.

use cudarc::cublas::{sys::cublasOperation_t, Gemm};
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
            self.pending_ids
                .lock()
                .map_err(|_| err(OP, "pending id checks poisoned"))?
                .push(PendingIdCheck {
                    flag,
                    ids: ids.clone(),
                    vocab: v,
                });
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
            let dims = ops::MatmulDims {
                batch: 1,
                m: d.o,
                n: p,
                k: ck,
                b_batched: false,
                out: Shape::new([d.o, p]),
            };
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
                let (m_, n_, k_) = (dims.m as i32, dims.n as i32, dims.k as i32);
                let cfg = cudarc::cublas::GemmConfig {
                    transa: cublasOperation_t::CUBLAS_OP_N,
                    transb: cublasOperation_t::CUBLAS_OP_N,
                    m: n_,
                    n: m_,
                    k: k_,
                    alpha: 1.0f32,
                    lda: n_,
                    ldb: k_,
                    beta: 0.0f32,
                    ldc: n_,
                };
                // SAFETY: cols [CK, P], w [O, CK], y [O, P] as sized above.
                unsafe { self.blas.gemm(cfg, &cols, wv, &mut yi) }.map_err(|e| err(OP, e))?;
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
}
