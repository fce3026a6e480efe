//! Elementwise ops ([`gato_core::ElementwiseOps`]): grid-stride kernels from `kernels.cu`.

use cudarc::driver::PushKernelArg;
use gato_core::{ops, BinaryOp, ElementwiseOps, Result, Tensor, UnaryOp};

use crate::backend::*;
use crate::storage::CudaStorage;

impl ElementwiseOps for CudaBackend {
    fn unary(&self, op: UnaryOp, x: &Tensor) -> Result<Tensor> {
        let xv = self.f32s("unary", "x", x)?;
        let n = x.elem_count();
        let mut y = self.alloc("unary", n)?;
        if n > 0 {
            let f = self.function("unary_f32")?;
            let (nn, code) = (n as i64, unary_code(op));
            // SAFETY: n elements in and out.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(xv)
                    .arg(&mut y)
                    .arg(&nn)
                    .arg(&code)
                    .launch(grid(n))
            }
            .map_err(|e| err("unary", e))?;
        }
        Ok(self.wrap(x.shape().clone(), CudaStorage::F32(y)))
    }
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        const OP: &str = "binary";
        let (_, inner) = ops::broadcast_dims(OP, a.shape(), b.shape())?;
        let (av, bv) = (self.f32s(OP, "a", a)?, self.f32s(OP, "b", b)?);
        let n = a.elem_count();
        let mut y = self.alloc(OP, n)?;
        if n > 0 && inner > 0 {
            let f = self.function("binary_f32")?;
            let (nn, ii, code) = (n as i64, inner as i64, binary_code(op));
            // SAFETY: a has n elements, b has `inner`, y has n.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(av)
                    .arg(bv)
                    .arg(&mut y)
                    .arg(&nn)
                    .arg(&ii)
                    .arg(&code)
                    .launch(grid(n))
            }
            .map_err(|e| err(OP, e))?;
        }
        Ok(self.wrap(a.shape().clone(), CudaStorage::F32(y)))
    }
    fn affine(&self, x: &Tensor, mul: f32, add: f32) -> Result<Tensor> {
        let xv = self.f32s("affine", "x", x)?;
        let n = x.elem_count();
        let mut y = self.alloc("affine", n)?;
        if n > 0 {
            let f = self.function("affine_f32")?;
            let nn = n as i64;
            // SAFETY: n elements in and out.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(xv)
                    .arg(&mut y)
                    .arg(&nn)
                    .arg(&mul)
                    .arg(&add)
                    .launch(grid(n))
            }
            .map_err(|e| err("affine", e))?;
        }
        Ok(self.wrap(x.shape().clone(), CudaStorage::F32(y)))
    }
    fn geglu(&self, x: &Tensor) -> Result<Tensor> {
        let (rows, f_, shape) = ops::geglu_dims(x.shape())?;
        let xv = self.f32s("geglu", "x", x)?;
        let mut y = self.alloc("geglu", rows * f_)?;
        if rows * f_ > 0 {
            let f = self.function("geglu_f32")?;
            let (r, ff) = (rows as i64, f_ as i64);
            // SAFETY: x holds rows·2F, y rows·F.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(xv)
                    .arg(&mut y)
                    .arg(&r)
                    .arg(&ff)
                    .launch(grid(rows * f_))
            }
            .map_err(|e| err("geglu", e))?;
        }
        Ok(self.wrap(shape, CudaStorage::F32(y)))
    }
}
