//! Concat, slice, permute and the KV cache's in-place write ([`gato_core::LayoutOps`]); block copies in `kernels`.

pub(crate) mod kernels;

use gato_core::error::{Error, Result};
use gato_core::ops;
use gato_core::shape::Shape;
use gato_core::tensor::Tensor;
use gato_core::LayoutOps;

use crate::{internal, CpuBackend, CpuStorage, CPU_BACKEND_NAME};

impl LayoutOps for CpuBackend {
    fn concat(&self, xs: &[&Tensor], axis: usize) -> Result<Tensor> {
        const OP: &str = "concat";
        let shapes: Vec<&Shape> = xs.iter().map(|t| t.shape()).collect();
        let (shape, _, _) = ops::concat_dims(&shapes, axis)?;
        let dtype = xs[0].dtype();
        let storages = xs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.dtype() != dtype {
                    return Err(Error::DType {
                        op: OP,
                        detail: format!("tensor {i} has dtype {}, tensor 0 has {dtype}", t.dtype()),
                    });
                }
                self.storage(OP, t)
            })
            .collect::<Result<Vec<_>>>()?;
        let with_dims: Vec<(&CpuStorage, &[usize])> = storages
            .iter()
            .zip(xs)
            .map(|(s, t)| (*s, t.dims()))
            .collect();
        self.compute(OP, dtype, shape, |out| {
            kernels::concat(&with_dims, axis, out)
        })
    }
    fn slice(&self, x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        const OP: &str = "slice";
        let (shape, _, _, _) = ops::slice_dims(x.shape(), axis, start, len)?;
        let src = self.storage(OP, x)?;
        self.compute(OP, x.dtype(), shape, |out| {
            kernels::slice(src, x.dims(), axis, start, len, out)
        })
    }
    fn slice_assign(
        &self,
        dst: &mut Tensor,
        src: &Tensor,
        axis: usize,
        start: usize,
    ) -> Result<()> {
        const OP: &str = "slice_assign";
        let plan = ops::slice_assign_dims(dst, src, axis, start)?;
        let src_storage = self.storage(OP, src)?;
        let target =
            dst.storage_for_write::<CpuStorage>(OP, CPU_BACKEND_NAME, |s| Ok(s.clone()))?;
        kernels::write_block(target, src_storage, plan, start).map_err(|e| internal(OP, e))
    }
    fn permute(&self, x: &Tensor, perm: &[usize]) -> Result<Tensor> {
        const OP: &str = "permute";
        let shape = ops::permute_dims(x.shape(), perm)?;
        let src = self.storage(OP, x)?;
        self.compute(OP, x.dtype(), shape, |out| {
            kernels::permute(src, x.dims(), perm, out)
        })
    }
}
