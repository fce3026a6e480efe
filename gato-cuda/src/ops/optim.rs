//! The optimiser's ops ([`gato_core::OptimOps`]): sums of squares reduced on the device in f64 (per-block
//! partials added in a fixed order, one read-back for any number of tensors) and AdamW as one fused in-place
//! kernel per tensor, in the order of operations every backend shares ([`gato_core::AdamWConstants::update`]).
//! A whole clipped step ([`OptimOps::adamw_clipped`]) stays on the device: the norm, the clipping factor and the
//! skip on a non-finite loss or norm are decided by the kernels, and the loss and norm come back in one copy.

use cudarc::driver::{CudaSlice, PushKernelArg};
use gato_core::{ops, AdamWStep, AdamWTensor, ClippedStep, Error, OptimOps, Result, Tensor};

use crate::backend::*;
use crate::storage::CudaStorage;

/// Blocks (partial sums) per tensor of a sum of squares.
const PARTIALS: usize = 64;

impl CudaBackend {
    /// `Σ x²` over `xs` into a device f64, in a fixed order.
    fn sum_squares_device(&self, xs: &[&Tensor]) -> Result<CudaSlice<f64>> {
        const OP: &str = "sum_squares";
        let mut partials = self
            .stream
            .alloc_zeros::<f64>((xs.len() * PARTIALS).max(1))
            .map_err(|e| err(OP, e))?;
        let f = self.function("sum_squares_partial_f32")?;
        for (i, x) in xs.iter().enumerate() {
            let xv = self.f32s(OP, "x", x)?;
            let n = x.elem_count();
            if n == 0 {
                continue;
            }
            let nn = n as i64;
            let mut part = partials.slice_mut(i * PARTIALS..(i + 1) * PARTIALS);
            let blocks = n.div_ceil(256).min(PARTIALS);
            // SAFETY: x holds n values; one partial per block, `blocks` ≤ PARTIALS slots.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(xv)
                    .arg(&nn)
                    .arg(&mut part)
                    .launch(per_row(blocks, 256))
            }
            .map_err(|e| err(OP, e))?;
        }
        let mut total = self.stream.alloc_zeros::<f64>(1).map_err(|e| err(OP, e))?;
        let f = self.function("sum_f64")?;
        let count = (xs.len() * PARTIALS) as i64;
        // SAFETY: partials holds `count` values (unused slots are zero), total one.
        unsafe {
            self.stream
                .launch_builder(&f)
                .arg(&partials)
                .arg(&mut total)
                .arg(&count)
                .launch(per_row(1, 256))
        }
        .map_err(|e| err(OP, e))?;
        Ok(total)
    }

    /// Make `t`'s storage this handle's own (copy-on-write) and return its f32 buffer.
    fn own_f32<'a>(&self, op: &'static str, t: &'a mut Tensor) -> Result<&'a mut CudaSlice<f32>> {
        match self.own(op, t)? {
            CudaStorage::F32(s) => Ok(s),
            other => Err(Error::DType {
                op,
                detail: format!("dtype {}, expected F32", other.dtype()),
            }),
        }
    }
}

impl OptimOps for CudaBackend {
    fn sum_squares(&self, x: &Tensor) -> Result<f64> {
        self.sum_squares_many(&[x])
    }

    fn sum_squares_many(&self, xs: &[&Tensor]) -> Result<f64> {
        let total = self.sum_squares_device(xs)?;
        self.check_pending_ids()?;
        Ok(self.fetch(&total, 1)?.first().copied().unwrap_or(0.0))
    }

    fn adamw_clipped(
        &self,
        tensors: &mut [AdamWTensor<'_>],
        max_norm: f64,
        loss: &Tensor,
    ) -> Result<ClippedStep> {
        const OP: &str = "adamw_clipped";
        // Every input checked before anything is written.
        for t in tensors.iter() {
            ops::adamw_dims(t.param, t.grad, t.m, t.v)?;
        }
        if loss.elem_count() != 1 {
            return Err(Error::shape(
                OP,
                format!("`loss` must hold one value, got {}", loss.shape()),
            ));
        }
        let lv = self.f32s(OP, "loss", loss)?;
        let grads: Vec<&Tensor> = tensors.iter().map(|t| t.grad).collect();
        let norm_sq = self.sum_squares_device(&grads)?;
        let f = self.function("adamw_clipped_f32")?;
        for t in tensors.iter_mut() {
            let n = t.param.elem_count();
            if n == 0 {
                continue;
            }
            let k = t.step.constants();
            let g = self.f32s(OP, "grad", t.grad)?;
            let pv = self.own_f32(OP, t.param)?;
            let mv = self.own_f32(OP, t.m)?;
            let vv = self.own_f32(OP, t.v)?;
            let nn = n as i64;
            // SAFETY: p, g, m and v hold n values each (checked by `adamw_dims`); norm_sq and loss one each.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(pv)
                    .arg(g)
                    .arg(mv)
                    .arg(vv)
                    .arg(&nn)
                    .arg(&k.decay)
                    .arg(&k.b1)
                    .arg(&k.one_minus_b1)
                    .arg(&k.b2)
                    .arg(&k.one_minus_b2)
                    .arg(&k.step_size)
                    .arg(&k.inv_sqrt_c2)
                    .arg(&k.eps)
                    .arg(&norm_sq)
                    .arg(lv)
                    .arg(&max_norm)
                    .launch(grid(n))
            }
            .map_err(|e| err(OP, e))?;
        }
        let mut out = self.stream.alloc_zeros::<f64>(2).map_err(|e| err(OP, e))?;
        let f = self.function("pack_loss_norm")?;
        // SAFETY: one thread copies one f32 and one f64 into two f64.
        unsafe {
            self.stream
                .launch_builder(&f)
                .arg(lv)
                .arg(&norm_sq)
                .arg(&mut out)
                .launch(per_row(1, 32))
        }
        .map_err(|e| err(OP, e))?;
        // The step's one wait: deferred id errors first, then the two numbers.
        self.check_pending_ids()?;
        let v = self.fetch(&out, 2)?;
        Ok(ClippedStep {
            loss: v.first().copied().unwrap_or(f64::NAN),
            norm_sq: v.get(1).copied().unwrap_or(f64::NAN),
        })
    }

    fn adamw_step(
        &self,
        param: &mut Tensor,
        grad: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        step: &AdamWStep,
    ) -> Result<()> {
        const OP: &str = "adamw_step";
        let n = ops::adamw_dims(param, grad, m, v)?;
        let g = self.f32s(OP, "grad", grad)?;
        for (name, t) in [("param", &*param), ("m", &*m), ("v", &*v)] {
            self.f32s(OP, name, t)?;
        }
        if n == 0 {
            return Ok(());
        }
        // Copy-on-write: a handle that shares a buffer keeps the old values.
        let pv = self.own_f32(OP, param)?;
        let mv = self.own_f32(OP, m)?;
        let vv = self.own_f32(OP, v)?;
        let k = step.constants();
        let f = self.function("adamw_f32")?;
        let nn = n as i64;
        // SAFETY: p, g, m and v hold n values each (checked by `adamw_dims`).
        unsafe {
            self.stream
                .launch_builder(&f)
                .arg(pv)
                .arg(g)
                .arg(mv)
                .arg(vv)
                .arg(&nn)
                .arg(&k.scale)
                .arg(&k.decay)
                .arg(&k.b1)
                .arg(&k.one_minus_b1)
                .arg(&k.b2)
                .arg(&k.one_minus_b2)
                .arg(&k.step_size)
                .arg(&k.inv_sqrt_c2)
                .arg(&k.eps)
                .launch(grid(n))
        }
        .map_err(|e| err(OP, e))?;
        Ok(())
    }
}
