//! Softmax and causal attention ([`gato_core::AttentionOps`]): `kernels` tiles queries and keys so the `T × T`
//! score matrix is never held whole; `avx512` holds the register tiles for 16-multiple head widths.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub(crate) mod kernels;
pub(crate) mod softmax;

use gato_core::backend::AttentionSpec;
use gato_core::error::Result;
use gato_core::ops;
use gato_core::shape::Shape;
use gato_core::tensor::Tensor;
use gato_core::AttentionOps;

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
}
