//! CPU storage: an ndarray array per dtype, always in standard (row-major, contiguous) layout.

use std::any::Any;

use half::{bf16, f16};
use ndarray::ArrayD;

use gato_core::dtype::DType;
use gato_core::tensor::Storage;

/// Name under which the CPU backend registers.
pub const CPU_BACKEND_NAME: &str = "cpu";

/// Host memory of a CPU tensor.
#[derive(Debug, Clone)]
pub enum CpuStorage {
    /// f32 data.
    F32(ArrayD<f32>),
    /// f16 data.
    F16(ArrayD<f16>),
    /// bf16 data.
    BF16(ArrayD<bf16>),
    /// u32 data.
    U32(ArrayD<u32>),
}

impl CpuStorage {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::BF16(_) => DType::BF16,
            CpuStorage::U32(_) => DType::U32,
        }
    }
}

impl Storage for CpuStorage {
    fn backend_name(&self) -> &str {
        CPU_BACKEND_NAME
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn size_in_bytes(&self) -> usize {
        let n = match self {
            CpuStorage::F32(a) => a.len(),
            CpuStorage::F16(a) => a.len(),
            CpuStorage::BF16(a) => a.len(),
            CpuStorage::U32(a) => a.len(),
        };
        n * self.dtype().size_in_bytes()
    }
}
