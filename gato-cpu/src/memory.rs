//! Memory and execution ([`gato_core::MemoryOps`]): uploads and downloads are copies into buffers from the
//! backend's pool; `scoped` runs a whole control step on one of the backend's rayon workers.

use half::{bf16, f16};
use ndarray::ArrayD;

use gato_core::dtype::{DType, HostData, HostSlice};
use gato_core::error::{Error, Result};
use gato_core::shape::Shape;
use gato_core::tensor::Tensor;
use gato_core::MemoryOps;

use crate::{wrap, CpuBackend, CpuStorage};

impl MemoryOps for CpuBackend {
    fn upload(&self, data: HostSlice<'_>, shape: &Shape) -> Result<Tensor> {
        const OP: &str = "upload";
        let n = shape.checked_elem_count(OP)?;
        if data.len() != n {
            return Err(Error::shape(
                OP,
                format!(
                    "{} values cannot fill shape {shape} ({n} elements)",
                    data.len()
                ),
            ));
        }
        self.compute(OP, data.dtype(), shape.clone(), |out| {
            let copied = match (data, out) {
                (HostSlice::F32(s), CpuStorage::F32(o)) => {
                    o.as_slice_mut().map(|o| o.copy_from_slice(s))
                }
                (HostSlice::F16(s), CpuStorage::F16(o)) => {
                    o.as_slice_mut().map(|o| o.copy_from_slice(s))
                }
                (HostSlice::BF16(s), CpuStorage::BF16(o)) => {
                    o.as_slice_mut().map(|o| o.copy_from_slice(s))
                }
                (HostSlice::U32(s), CpuStorage::U32(o)) => {
                    o.as_slice_mut().map(|o| o.copy_from_slice(s))
                }
                _ => None,
            };
            copied.ok_or_else(|| "output buffer of another dtype or layout".to_string())
        })
    }
    fn download(&self, x: &Tensor) -> Result<HostData> {
        Ok(match self.storage("download", x)? {
            // Storage is always standard layout, so this is a memcpy.
            CpuStorage::F32(a) => HostData::F32(
                a.as_slice()
                    .map_or_else(|| a.iter().copied().collect(), <[f32]>::to_vec),
            ),
            CpuStorage::F16(a) => HostData::F16(
                a.as_slice()
                    .map_or_else(|| a.iter().copied().collect(), <[half::f16]>::to_vec),
            ),
            CpuStorage::BF16(a) => HostData::BF16(
                a.as_slice()
                    .map_or_else(|| a.iter().copied().collect(), <[half::bf16]>::to_vec),
            ),
            CpuStorage::U32(a) => HostData::U32(
                a.as_slice()
                    .map_or_else(|| a.iter().copied().collect(), <[u32]>::to_vec),
            ),
        })
    }
    fn download_f32_into(&self, x: &Tensor, out: &mut Vec<f32>) -> Result<()> {
        let values = self.f32s("download_f32_into", "x", x)?;
        out.clear();
        out.extend_from_slice(values);
        Ok(())
    }
    fn zeros(&self, shape: &Shape, dtype: DType) -> Result<Tensor> {
        const OP: &str = "zeros";
        shape.checked_elem_count(OP)?;
        // Never from the pool: zeros are what in-place writes start from (the KV cache), and a pooled buffer is
        // shared with the pool, so the first write would copy it.
        wrap(OP, shape.clone(), crate::pool::zeroed(dtype, shape))
    }
    fn cast(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        const OP: &str = "cast";
        let src = self.storage(OP, x)?;
        if !(src.dtype().is_float() && dtype.is_float()) && src.dtype() != dtype {
            return Err(Error::DType {
                op: OP,
                detail: format!(
                    "cannot cast {} to {dtype}: only float dtypes convert",
                    src.dtype()
                ),
            });
        }
        // Widen to f32 first, then narrow: exact for f16/bf16 → f32, round-to-nearest-even when narrowing.
        let wide: ArrayD<f32> = match src {
            CpuStorage::F32(a) => a.clone(),
            CpuStorage::F16(a) => a.mapv(f16::to_f32),
            CpuStorage::BF16(a) => a.mapv(bf16::to_f32),
            CpuStorage::U32(a) => return wrap(OP, x.shape().clone(), CpuStorage::U32(a.clone())),
        };
        let storage = match dtype {
            DType::F32 => CpuStorage::F32(wide),
            DType::F16 => CpuStorage::F16(wide.mapv(f16::from_f32)),
            DType::BF16 => CpuStorage::BF16(wide.mapv(bf16::from_f32)),
            DType::U32 => unreachable!("rejected above"),
        };
        wrap(OP, x.shape().clone(), storage)
    }
    fn scoped(&self, f: &mut (dyn FnMut() -> Result<()> + Send)) -> Result<()> {
        self.pool.install(f)
    }
}
