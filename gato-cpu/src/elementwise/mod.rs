//! Elementwise ops ([`gato_core::ElementwiseOps`]): `kernels` maps chunks of the output in parallel; `math` holds
//! the vectorised exp and GELU.

pub(crate) mod kernels;
pub(crate) mod math;

use gato_core::backend::{BinaryOp, UnaryOp};
use gato_core::error::Result;
use gato_core::ops;
use gato_core::tensor::Tensor;
use gato_core::ElementwiseOps;

use crate::CpuBackend;

impl ElementwiseOps for CpuBackend {
    fn unary(&self, op: UnaryOp, x: &Tensor) -> Result<Tensor> {
        let xv = self.f32s("unary", "x", x)?;
        self.compute_f32("unary", x.shape().clone(), |out| {
            kernels::unary(op, xv, out)
        })
    }
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        const OP: &str = "binary";
        ops::broadcast_dims(OP, a.shape(), b.shape())?;
        let (av, bv) = (self.f32s(OP, "a", a)?, self.f32s(OP, "b", b)?);
        self.compute_f32(OP, a.shape().clone(), |out| {
            kernels::binary(op, av, bv, out)
        })
    }
    fn affine(&self, x: &Tensor, mul: f32, add: f32) -> Result<Tensor> {
        let xv = self.f32s("affine", "x", x)?;
        self.compute_f32("affine", x.shape().clone(), |out| {
            kernels::map(xv, out, |v| v * mul + add)
        })
    }
    fn geglu(&self, x: &Tensor) -> Result<Tensor> {
        let (_, f, shape) = ops::geglu_dims(x.shape())?;
        let xv = self.f32s("geglu", "x", x)?;
        self.compute_f32("geglu", shape, |out| kernels::geglu(xv, f, out))
    }
}
