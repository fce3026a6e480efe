//! The optimiser's ops ([`gato_core::OptimOps`]): sums of squares reduced on the device in f64 (per-block
//! partials added in a fixed order, one read-back for any number of tensors) and AdamW as one fused in-place
//! kernel per tensor, in the order of operations every backend shares ([`gato_core::AdamWConstants::update`]).

use cudarc::driver::PushKernelArg;
use gato_core::{ops, AdamWStep, Error, OptimOps, Result, Tensor};

use crate::backend::*;
use crate::storage::{CudaStorage, CUDA_BACKEND_NAME};

/// Blocks (partial sums) per tensor of a sum of squares.
const PARTIALS: usize = 64;

impl OptimOps for CudaBackend {
    fn sum_squares(&self, x: &Tensor) -> Result<f64> {
        self.sum_squares_many(&[x])
    }

    fn sum_squares_many(&self, xs: &[&Tensor]) -> Result<f64> {
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
        self.check_pending_ids()?;
        Ok(self.fetch(&total, 1)?.first().copied().unwrap_or(0.0))
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
        // Copy-on-write: a handle that shares a buffer keeps the old values (and a gradient that shared the
        // parameter's buffer now reads the old copy).
        let copy = |shared: &CudaStorage| -> Result<CudaStorage> {
            let mut own = self.empty_like(shared.dtype(), n)?;
            let whole = Copy2d {
                rows: 1,
                src_row: n,
                src_off: 0,
                dst_row: n,
                dst_off: 0,
                count: n,
            };
            self.block_copy(shared, &mut own, whole)?;
            Ok(own)
        };
        let ps = param.storage_for_write::<CudaStorage>(OP, CUDA_BACKEND_NAME, copy)?;
        let ms = m.storage_for_write::<CudaStorage>(OP, CUDA_BACKEND_NAME, copy)?;
        let vs = v.storage_for_write::<CudaStorage>(OP, CUDA_BACKEND_NAME, copy)?;
        let (CudaStorage::F32(pv), CudaStorage::F32(mv), CudaStorage::F32(vv)) = (ps, ms, vs)
        else {
            return Err(Error::DType {
                op: OP,
                detail: "param, m and v must be f32".into(),
            });
        };
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
