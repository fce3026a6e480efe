//! Matrix products ([`gato_core::MatmulOps`]): `gemm` (the gemm crate, for many rows) and `small_m` (register
//! tiles for the few-row products of acting, f16/bf16 weights widened in the kernel); products against weights
//! laid out by `pack_weight` go to [`crate::acting`].

pub(crate) mod gemm;
pub(crate) mod small_m;

use std::sync::Arc;

use gato_core::backend::{MatmulPrecision, MatmulSpec, UnaryOp};
use gato_core::error::{Error, Result};
use gato_core::ops;
use gato_core::tensor::Tensor;
use gato_core::MatmulOps;

use crate::{CpuBackend, CpuPackedWeight};

impl CpuBackend {
    /// `act(x · w + bias)` with the bias fused into the product and the activation applied to each output block
    /// while it is in cache.
    fn linear_op(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        act: Option<UnaryOp>,
    ) -> Result<Tensor> {
        const OP: &str = "linear";
        let spec = MatmulSpec::default();
        let d = ops::linear_dims(x.shape(), w.shape(), bias.map(|b| b.shape()))?;
        let (xv, wv) = (self.f32s(OP, "x", x)?, self.weights(OP, "w", w)?);
        let bv = bias.map(|b| self.f32s(OP, "bias", b)).transpose()?;
        if let Some(p) = w.storage().as_any().downcast_ref::<CpuPackedWeight>() {
            if p.dims() == (d.k, d.n) {
                let rows = d.batch * d.m;
                return self.compute_f32(OP, d.out.clone(), |out| {
                    p.product(out, xv, rows, spec.alpha, bv, act)
                });
            }
        }
        self.compute_f32(OP, d.out.clone(), |out| {
            gemm::matmul(xv, wv, &d, &spec, self.threads, bv, act, out)
        })
    }
}

impl MatmulOps for CpuBackend {
    fn matmul(&self, a: &Tensor, b: &Tensor, spec: &MatmulSpec) -> Result<Tensor> {
        const OP: &str = "matmul";
        let d = ops::matmul_dims(a.shape(), b.shape(), spec)?;
        let (av, bv) = (self.f32s(OP, "a", a)?, self.weights(OP, "b", b)?);
        self.compute_f32(OP, d.out.clone(), |out| {
            gemm::matmul(av, bv, &d, spec, self.threads, None, None, out)
        })
    }
    fn linear(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        self.linear_op(x, w, bias, None)
    }
    fn pack_weight(&self, w: &Tensor, precision: MatmulPrecision) -> Result<Option<Tensor>> {
        const OP: &str = "pack_weight";
        let values = self.weights(OP, "w", w)?;
        let &[k, n] = w.dims() else {
            return Err(Error::shape(
                OP,
                format!("`w` must be [K, N], got {}", w.shape()),
            ));
        };
        let original = match w.storage().as_any().downcast_ref::<CpuPackedWeight>() {
            Some(p) => p.original().clone(),
            None => w.clone(),
        };
        let packed = self.run(|| CpuPackedWeight::new(original, values, k, n, precision));
        Ok(Some(Tensor::from_storage(
            w.shape().clone(),
            w.dtype(),
            Arc::new(packed),
        )))
    }
    fn linear_act(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        act: UnaryOp,
    ) -> Result<Tensor> {
        self.linear_op(x, w, bias, Some(act))
    }
}
