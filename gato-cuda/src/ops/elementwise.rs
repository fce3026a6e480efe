//! Elementwise ops ([`gato_core::ElementwiseOps`]): grid-stride kernels from `kernels.cu`, their backwards from
//! `kernels_backward.cu`, and the row sum that is a broadcast bias's gradient.

use cudarc::driver::PushKernelArg;
use gato_core::{ops, BinaryOp, ElementwiseOps, Result, Shape, Tensor, UnaryOp};

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

    fn unary_backward(&self, op: UnaryOp, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        const OP: &str = "unary_backward";
        ops::same_shape(OP, x.shape(), dy.shape())?;
        let (xv, dyv) = (self.f32s(OP, "x", x)?, self.f32s(OP, "dy", dy)?);
        let n = x.elem_count();
        let mut dx = self.alloc(OP, n)?;
        if n > 0 {
            let f = self.function("unary_backward_f32")?;
            let (nn, code) = (n as i64, unary_code(op));
            // SAFETY: x, dy and dx hold n elements.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(xv)
                    .arg(dyv)
                    .arg(&mut dx)
                    .arg(&nn)
                    .arg(&code)
                    .launch(grid(n))
            }
            .map_err(|e| err(OP, e))?;
        }
        Ok(self.wrap(x.shape().clone(), CudaStorage::F32(dx)))
    }
    fn geglu_backward(&self, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        const OP: &str = "geglu_backward";
        let f_ = ops::geglu_backward_dims(x.shape(), dy.shape())?;
        let (xv, dyv) = (self.f32s(OP, "x", x)?, self.f32s(OP, "dy", dy)?);
        let rows = dy.elem_count().checked_div(f_).unwrap_or(0);
        let mut dx = self.alloc(OP, x.elem_count())?;
        if rows * f_ > 0 {
            let f = self.function("geglu_backward_f32")?;
            let (r, ff) = (rows as i64, f_ as i64);
            // SAFETY: x and dx hold rows·2F, dy rows·F.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(xv)
                    .arg(dyv)
                    .arg(&mut dx)
                    .arg(&r)
                    .arg(&ff)
                    .launch(grid(rows * f_))
            }
            .map_err(|e| err(OP, e))?;
        }
        Ok(self.wrap(x.shape().clone(), CudaStorage::F32(dx)))
    }
    fn sum_rows(&self, x: &Tensor) -> Result<Tensor> {
        const OP: &str = "sum_rows";
        let (rows, d) = ops::sum_rows_dims(x.shape())?;
        let xv = self.f32s(OP, "x", x)?;
        let out = self.column_sums(OP, xv, rows, d)?;
        Ok(self.wrap(Shape::new([d]), CudaStorage::F32(out)))
    }
}
