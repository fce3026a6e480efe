//! Memory ([`gato_core::MemoryOps`]): host↔device copies (the only ones besides a few bytes of shape metadata),
//! casts on the device, and the stream synchronisation that surfaces deferred id-check errors.

use cudarc::driver::{CudaSlice, PushKernelArg};
use gato_core::{DType, Error, HostData, HostSlice, MemoryOps, Result, Shape, Tensor};
use half::{bf16, f16};

use crate::backend::*;
use crate::storage::CudaStorage;

impl MemoryOps for CudaBackend {
    fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| err("synchronize", e))?;
        self.check_pending_ids()
    }
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
        let e = |x| err(OP, x);
        let s = match data {
            _ if n == 0 => self.empty_like(data.dtype(), 0)?,
            HostSlice::F32(v) => CudaStorage::F32(self.stream.clone_htod(v).map_err(e)?),
            HostSlice::F16(v) => CudaStorage::F16(
                self.stream
                    .clone_htod(&v.iter().map(|x| x.to_bits()).collect::<Vec<u16>>())
                    .map_err(e)?,
            ),
            HostSlice::BF16(v) => CudaStorage::BF16(
                self.stream
                    .clone_htod(&v.iter().map(|x| x.to_bits()).collect::<Vec<u16>>())
                    .map_err(e)?,
            ),
            HostSlice::U32(v) => CudaStorage::U32(self.stream.clone_htod(v).map_err(e)?),
        };
        Ok(self.wrap(shape.clone(), s))
    }
    fn download(&self, x: &Tensor) -> Result<HostData> {
        const OP: &str = "download";
        // A download waits for the stream anyway; raise any id error the device recorded first.
        self.check_pending_ids()?;
        let n = x.elem_count();
        Ok(match self.storage(OP, x)? {
            CudaStorage::F32(s) => HostData::F32(self.fetch(s, n)?),
            CudaStorage::F16(s) => {
                HostData::F16(self.fetch(s, n)?.into_iter().map(f16::from_bits).collect())
            }
            CudaStorage::BF16(s) => {
                HostData::BF16(self.fetch(s, n)?.into_iter().map(bf16::from_bits).collect())
            }
            CudaStorage::U32(s) => HostData::U32(self.fetch(s, n)?),
        })
    }
    fn zeros(&self, shape: &Shape, dtype: DType) -> Result<Tensor> {
        let n = shape.checked_elem_count("zeros")?;
        Ok(self.wrap(shape.clone(), self.empty_like(dtype, n)?))
    }
    fn cast(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        const OP: &str = "cast";
        let src = self.storage(OP, x)?;
        if src.dtype() == dtype {
            let mut out = self.empty_like(dtype, x.elem_count())?;
            let n = x.elem_count();
            self.block_copy(
                src,
                &mut out,
                Copy2d {
                    rows: 1,
                    src_row: n,
                    src_off: 0,
                    dst_row: n,
                    dst_off: 0,
                    count: n,
                },
            )?;
            return Ok(self.wrap(x.shape().clone(), out));
        }
        if !(src.dtype().is_float() && dtype.is_float()) {
            return Err(Error::DType {
                op: OP,
                detail: format!(
                    "cannot cast {} to {dtype}: only float dtypes convert",
                    src.dtype()
                ),
            });
        }
        let n = x.elem_count();
        let nn = n as i64;
        // Widen to f32 first, then narrow.
        let wide: CudaSlice<f32> = match src {
            CudaStorage::F32(s) => s.clone(),
            CudaStorage::F16(s) | CudaStorage::BF16(s) => {
                let name = if src.dtype() == DType::F16 {
                    "f16_to_f32"
                } else {
                    "bf16_to_f32"
                };
                let mut y = self.alloc(OP, n)?;
                let f = self.function(name)?;
                // SAFETY: n elements in and out.
                unsafe {
                    self.stream
                        .launch_builder(&f)
                        .arg(s)
                        .arg(&mut y)
                        .arg(&nn)
                        .launch(grid(n))
                }
                .map_err(|e| err(OP, e))?;
                y
            }
            CudaStorage::U32(_) => unreachable!("rejected above"),
        };
        let out = match dtype {
            DType::F32 => CudaStorage::F32(wide),
            DType::F16 | DType::BF16 => {
                let mut y = self
                    .stream
                    .alloc_zeros::<u16>(n.max(1))
                    .map_err(|e| err(OP, e))?;
                let f = self.function(if dtype == DType::F16 {
                    "f32_to_f16"
                } else {
                    "f32_to_bf16"
                })?;
                // SAFETY: n elements in and out.
                unsafe {
                    self.stream
                        .launch_builder(&f)
                        .arg(&wide)
                        .arg(&mut y)
                        .arg(&nn)
                        .launch(grid(n))
                }
                .map_err(|e| err(OP, e))?;
                if dtype == DType::F16 {
                    CudaStorage::F16(y)
                } else {
                    CudaStorage::BF16(y)
                }
            }
            DType::U32 => unreachable!("rejected above"),
        };
        Ok(self.wrap(x.shape().clone(), out))
    }
}
