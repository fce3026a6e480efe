//! Memory and execution: moving data between the host and a backend, and the context ops run in.

use crate::dtype::{DType, HostData, HostSlice};
use crate::error::{Error, Result};
use crate::shape::Shape;
use crate::tensor::Tensor;

use super::Backend;

/// Host ↔ backend transfers, allocation, dtype conversion and the execution context (a family of [`Backend`]).
pub trait MemoryOps {
    /// Copy host data to a new tensor of the given shape. Errors if the element count does not match.
    fn upload(&self, data: HostSlice<'_>, shape: &Shape) -> Result<Tensor>;

    /// Copy a tensor back to the host (waits for queued work).
    fn download(&self, x: &Tensor) -> Result<HostData>;

    /// Copy an f32 tensor into `out`, replacing what it held: how acting reads each token's logits without
    /// allocating (`docs/design.md` §7) once `out` has the capacity. Errors, leaving `out` as it was, when `x` is
    /// not f32. The default downloads and copies.
    fn download_f32_into(&self, x: &Tensor, out: &mut Vec<f32>) -> Result<()> {
        x.expect_dtype("download_f32_into", "x", DType::F32)?;
        let data = self.download(x)?.into_f32().ok_or_else(|| Error::DType {
            op: "download_f32_into",
            detail: "the backend downloaded another dtype".into(),
        })?;
        out.clear();
        out.extend_from_slice(&data);
        Ok(())
    }

    /// A tensor of zeros.
    fn zeros(&self, shape: &Shape, dtype: DType) -> Result<Tensor>;

    /// Convert between float dtypes (round to nearest even when narrowing).
    fn cast(&self, x: &Tensor, dtype: DType) -> Result<Tensor>;

    /// Run `f`, a sequence of ops, inside the backend's execution context. The CPU backend runs it on one of its
    /// worker threads, so each op inside starts without handing work to another thread (which costs more than
    /// a small op itself, e.g. when decoding one token); other backends just call `f`. Model entry points wrap
    /// their whole pass in it (see [`run_scoped`]).
    fn scoped(&self, f: &mut (dyn FnMut() -> Result<()> + Send)) -> Result<()> {
        f()
    }

    /// Wait until all queued work has finished (a no-op for synchronous backends).
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
}

/// Run `f` through [`MemoryOps::scoped`] and return its result.
pub fn run_scoped<T: Send>(be: &dyn Backend, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let mut f = Some(f);
    let mut out = None;
    be.scoped(&mut || {
        if let Some(f) = f.take() {
            out = Some(f());
        }
        Ok(())
    })?;
    out.unwrap_or_else(|| {
        Err(Error::Backend {
            backend: be.name().to_string(),
            op: "scoped",
            detail: "the backend returned without running the closure".into(),
        })
    })
}
