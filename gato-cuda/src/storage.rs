//! Device memory of a CUDA tensor. Half types are stored as raw 16-bit words (`u16`); kernels convert.

use std::any::Any;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DriverError};
use gato_core::{DType, Storage};

/// Registered name of the CUDA backend.
pub const CUDA_BACKEND_NAME: &str = "cuda";

/// A device buffer per dtype.
#[derive(Debug)]
pub enum CudaStorage {
    /// f32.
    F32(CudaSlice<f32>),
    /// f16 bits.
    F16(CudaSlice<u16>),
    /// bf16 bits.
    BF16(CudaSlice<u16>),
    /// u32.
    U32(CudaSlice<u32>),
}

impl CudaStorage {
    /// Element type.
    pub fn dtype(&self) -> DType {
        match self {
            CudaStorage::F32(_) => DType::F32,
            CudaStorage::F16(_) => DType::F16,
            CudaStorage::BF16(_) => DType::BF16,
            CudaStorage::U32(_) => DType::U32,
        }
    }

    /// Elements.
    pub fn len(&self) -> usize {
        match self {
            CudaStorage::F32(s) => s.len(),
            CudaStorage::F16(s) | CudaStorage::BF16(s) => s.len(),
            CudaStorage::U32(s) => s.len(),
        }
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of this buffer, queued on `stream`: the private buffer that copy-on-write gives a handle whose
    /// storage is shared (`Tensor::storage_for_write`) before an in-place op writes it.
    pub(crate) fn copy_on(&self, stream: &Arc<CudaStream>) -> Result<Self, DriverError> {
        Ok(match self {
            CudaStorage::F32(s) => CudaStorage::F32(stream.clone_dtod(s)?),
            CudaStorage::F16(s) => CudaStorage::F16(stream.clone_dtod(s)?),
            CudaStorage::BF16(s) => CudaStorage::BF16(stream.clone_dtod(s)?),
            CudaStorage::U32(s) => CudaStorage::U32(stream.clone_dtod(s)?),
        })
    }
}

impl Storage for CudaStorage {
    fn backend_name(&self) -> &str {
        CUDA_BACKEND_NAME
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn size_in_bytes(&self) -> usize {
        self.len() * self.dtype().size_in_bytes()
    }
}
