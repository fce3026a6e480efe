//! Softmax and causal attention ([`gato_core::AttentionOps`]): `kernels` tiles queries and keys so the `T × T`
//! score matrix is never held whole; `avx512` holds the register tiles for 16-multiple head widths.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub(crate) mod backward;
pub(crate) mod kernels;
pub(crate) mod softmax;

use gato_core::backend::AttentionSpec;
use gato_core::dtype::HostSlice;
use gato_core::error::Result;
use gato_core::ops;
use gato_core::shape::Shape;
use gato_core::tensor::Tensor;
use gato_core::AttentionOps;
use gato_core::MemoryOps;

use crate::CpuBackend;

impl AttentionOps for CpuBackend {
    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        let d = x.shape().last_dim("softmax")?;
        let xv = self.f32s("softmax", "x", x)?;
        self.compute_f32("softmax", x.shape().clone(), |out| {
            softmax::softmax(xv, d, false, out)
        })
    }
    fn log_softmax(&self, x: &Tensor) -> Result<Tensor> {
        let d = x.shape().last_dim("log_softmax")?;
        let xv = self.f32s("log_softmax", "x", x)?;
        self.compute_f32("log_softmax", x.shape().clone(), |out| {
            softmax::softmax(xv, d, true, out)
        })
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
        let (qv, kv, vv) = (
            self.f32s(OP, "q", q)?,
            self.f32s(OP, "k", k)?,
            self.f32s(OP, "v", v)?,
        );
        self.compute_f32(OP, Shape::new([d.b, d.h, d.tq, d.dv]), |out| {
            kernels::attention(qv, kv, vv, &d, spec, out)
        })
    }

    fn cross_entropy(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        scale: f32,
    ) -> Result<(Tensor, Tensor)> {
        const OP: &str = "cross_entropy";
        let (_, v) = ops::cross_entropy_dims(logits.shape(), targets.shape())?;
        let (lv, tv) = (
            self.f32s(OP, "logits", logits)?,
            self.u32s(OP, "targets", targets)?,
        );
        ops::check_targets(tv, v)?;
        let mut loss = 0f64;
        let dlogits = self.compute_f32(OP, logits.shape().clone(), |out| {
            loss = softmax::cross_entropy(lv, v, tv, scale, out)
        })?;
        let loss = self.compute_f32(OP, Shape::new([1]), |out| out[0] = loss as f32)?;
        Ok((loss, dlogits))
    }

    fn attention_train(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        spec: &AttentionSpec,
    ) -> Result<(Tensor, Tensor)> {
        const OP: &str = "attention_train";
        let d = ops::attention_dims(q.shape(), k.shape(), v.shape(), spec)?;
        let out = self.attention(q, k, v, spec)?;
        let (qv, kv) = (self.f32s(OP, "q", q)?, self.f32s(OP, "k", k)?);
        let lse = self.compute_f32(OP, Shape::new([d.b, d.h, d.tq]), |o| {
            backward::lse(qv, kv, &d, spec, o)
        })?;
        Ok((out, lse))
    }

    fn attention_backward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        out: &Tensor,
        lse: &Tensor,
        dout: &Tensor,
        spec: &AttentionSpec,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        const OP: &str = "attention_backward";
        let d = ops::attention_backward_dims(
            q.shape(),
            k.shape(),
            v.shape(),
            out.shape(),
            lse.shape(),
            dout.shape(),
            spec,
        )?;
        let (qv, kv, vv) = (
            self.f32s(OP, "q", q)?,
            self.f32s(OP, "k", k)?,
            self.f32s(OP, "v", v)?,
        );
        let (ov, lv, gv) = (
            self.f32s(OP, "out", out)?,
            self.f32s(OP, "lse", lse)?,
            self.f32s(OP, "dout", dout)?,
        );
        // dq and dk/dv are written by one pass over each head; dk and dv are filled first into plain vectors.
        let (mut dk, mut dv) = (vec![0f32; kv.len()], vec![0f32; vv.len()]);
        let dq = self.compute_f32(OP, q.shape().clone(), |dq| {
            backward::backward(qv, kv, vv, ov, lv, gv, &d, spec, (dq, &mut dk, &mut dv))
        })?;
        let dk = self.upload(HostSlice::F32(&dk), k.shape())?;
        let dv = self.upload(HostSlice::F32(&dv), v.shape())?;
        Ok((dq, dk, dv))
    }
}
