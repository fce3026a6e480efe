//! Embedding gather and convolution ([`gato_core::GatherConvOps`]); the convolution (im2col + product) is in `conv`.

pub(crate) mod conv;

use gato_core::backend::Conv2dSpec;
use gato_core::dtype::HostSlice;
use gato_core::error::Result;
use gato_core::ops;
use gato_core::shape::Shape;
use gato_core::tensor::Tensor;
use gato_core::GatherConvOps;
use gato_core::MemoryOps;

use crate::CpuBackend;

impl GatherConvOps for CpuBackend {
    fn embedding(&self, table: &Tensor, ids: &Tensor) -> Result<Tensor> {
        const OP: &str = "embedding";
        let (v, d, shape) = ops::embedding_dims(table.shape(), ids.shape())?;
        let (t, idv) = (self.f32s(OP, "table", table)?, self.u32s(OP, "ids", ids)?);
        ops::check_ids(idv, v)?;
        self.compute_f32(OP, shape, |out| {
            if d == 0 {
                return;
            }
            for (row, &id) in out.chunks_exact_mut(d).zip(idv) {
                // PAD_ID rows stay zero.
                if id != ops::PAD_ID {
                    let r = id as usize * d;
                    row.copy_from_slice(&t[r..r + d]);
                }
            }
        })
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
        let bv = bias.map(|b| self.f32s(OP, "bias", b)).transpose()?;
        self.compute_f32(OP, Shape::new([d.n, d.o, d.oh, d.ow]), |out| {
            conv::conv2d(xv, wv, bv, &d, self.threads, out)
        })
    }

    fn embedding_backward(&self, ids: &Tensor, dy: &Tensor, vocab: usize) -> Result<Tensor> {
        const OP: &str = "embedding_backward";
        let d = ops::embedding_backward_dims(ids.shape(), dy.shape(), vocab)?;
        let (idv, gv) = (self.u32s(OP, "ids", ids)?, self.f32s(OP, "dy", dy)?);
        ops::check_ids(idv, vocab)?;
        self.compute_f32(OP, Shape::new([vocab, d]), |out| {
            conv::scatter_add_rows(idv, gv, d, out)
        })
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
        let (xv, wv, gv) = (
            self.f32s(OP, "x", x)?,
            self.f32s(OP, "w", w)?,
            self.f32s(OP, "dy", dy)?,
        );
        let (mut dw, mut db) = (vec![0f32; wv.len()], vec![0f32; d.o]);
        let dx = self.compute_f32(OP, x.shape().clone(), |dx| {
            conv::conv2d_backward(xv, wv, gv, &d, self.threads, (dx, &mut dw, &mut db))
        })?;
        let dw = self.upload(HostSlice::F32(&dw), w.shape())?;
        let db = self.upload(HostSlice::F32(&db), &Shape::new([d.o]))?;
        Ok((dx, dw, db))
    }
}
