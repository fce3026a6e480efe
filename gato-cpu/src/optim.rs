//! The optimiser's ops ([`gato_core::OptimOps`]): the sum of squares in fixed chunks (f64 partial sums added in
//! chunk order, so the result does not depend on the thread count) and AdamW's update in place, both in parallel
//! on the backend's threads.

use gato_core::backend::AdamWStep;
use gato_core::error::{Error, Result};
use gato_core::ops;
use gato_core::tensor::Tensor;
use gato_core::OptimOps;
use rayon::prelude::*;

use crate::storage::{CpuStorage, CPU_BACKEND_NAME};
use crate::CpuBackend;

/// Elements per parallel task: large enough that scheduling is negligible, small enough for two cores to share.
const CHUNK: usize = 1 << 16;

fn f32_mut<'a>(t: &'a mut Tensor, what: &str) -> Result<&'a mut [f32]> {
    const OP: &str = "adamw_step";
    match t.storage_for_write::<CpuStorage>(OP, CPU_BACKEND_NAME, |s| Ok(s.clone()))? {
        CpuStorage::F32(a) => a.as_slice_mut().ok_or_else(|| Error::Backend {
            backend: CPU_BACKEND_NAME.into(),
            op: OP,
            detail: format!("{what}: non-contiguous storage"),
        }),
        other => Err(Error::DType {
            op: OP,
            detail: format!("{what} has dtype {}, expected F32", other.dtype()),
        }),
    }
}

impl OptimOps for CpuBackend {
    fn sum_squares(&self, x: &Tensor) -> Result<f64> {
        let v = self.f32s("sum_squares", "x", x)?;
        let partial: Vec<f64> = self.pool.install(|| {
            v.par_chunks(CHUNK)
                .map(|c| c.iter().map(|&a| a as f64 * a as f64).sum::<f64>())
                .collect()
        });
        Ok(partial.iter().sum())
    }

    fn adamw_step(
        &self,
        param: &mut Tensor,
        grad: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        step: &AdamWStep,
    ) -> Result<()> {
        ops::adamw_dims(param, grad, m, v)?;
        let k = step.constants();
        let g = self.f32s("adamw_step", "grad", grad)?;
        let (p, mv, vv) = (f32_mut(param, "param")?, f32_mut(m, "m")?, f32_mut(v, "v")?);
        self.pool.install(|| {
            p.par_chunks_mut(CHUNK)
                .zip(mv.par_chunks_mut(CHUNK))
                .zip(vv.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK))
                .for_each(|(((p, m), v), g)| {
                    for i in 0..p.len() {
                        (p[i], m[i], v[i]) = k.update(p[i], g[i], m[i], v[i]);
                    }
                })
        });
        Ok(())
    }
}
