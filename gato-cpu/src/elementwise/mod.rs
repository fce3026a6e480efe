//! Elementwise ops ([`gato_core::ElementwiseOps`]): `kernels` maps chunks of the output in parallel; `math` holds
//! the vectorised exp and GELU.

pub(crate) mod backward;
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

    fn unary_backward(&self, op: UnaryOp, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        const OP: &str = "unary_backward";
        ops::same_shape(OP, x.shape(), dy.shape())?;
        let (xv, gv) = (self.f32s(OP, "x", x)?, self.f32s(OP, "dy", dy)?);
        self.compute_f32(OP, x.shape().clone(), |out| {
            backward::unary_backward(op, xv, gv, out)
        })
    }

    fn geglu_backward(&self, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        const OP: &str = "geglu_backward";
        let f = ops::geglu_backward_dims(x.shape(), dy.shape())?;
        let (xv, gv) = (self.f32s(OP, "x", x)?, self.f32s(OP, "dy", dy)?);
        self.compute_f32(OP, x.shape().clone(), |out| {
            backward::geglu_backward(xv, f, gv, out)
        })
    }

    fn sum_rows(&self, x: &Tensor) -> Result<Tensor> {
        const OP: &str = "sum_rows";
        let (_, d) = ops::sum_rows_dims(x.shape())?;
        let xv = self.f32s(OP, "x", x)?;
        self.compute_f32(OP, gato_core::Shape::new([d]), |out| {
            backward::sum_rows(xv, d, out)
        })
    }
}
