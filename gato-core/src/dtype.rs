//! Element types of tensors and host-side buffers for moving data on and off a backend.

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

/// Element type of a tensor. Compute is f32; `F16`/`BF16` are storage types a backend may support (weights);
/// `U32` holds token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 half precision (`half::f16`).
    F16,
    /// bfloat16 (`half::bf16`).
    BF16,
    /// Unsigned 32-bit integers (token ids, indices).
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        !matches!(self, DType::U32)
    }

    /// Lower-case name (`f32`, `f16`, `bf16`, `u32`).
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::U32 => "u32",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Borrowed host data to upload to a backend.
#[derive(Debug, Clone, Copy)]
pub enum HostSlice<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// f16 values.
    F16(&'a [f16]),
    /// bf16 values.
    BF16(&'a [bf16]),
    /// u32 values.
    U32(&'a [u32]),
}

impl HostSlice<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            HostSlice::F32(s) => s.len(),
            HostSlice::F16(s) => s.len(),
            HostSlice::BF16(s) => s.len(),
            HostSlice::U32(s) => s.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        match self {
            HostSlice::F32(_) => DType::F32,
            HostSlice::F16(_) => DType::F16,
            HostSlice::BF16(_) => DType::BF16,
            HostSlice::U32(_) => DType::U32,
        }
    }
}

/// Owned host data downloaded from a backend.
#[derive(Debug, Clone, PartialEq)]
pub enum HostData {
    /// f32 values.
    F32(Vec<f32>),
    /// f16 values.
    F16(Vec<f16>),
    /// bf16 values.
    BF16(Vec<bf16>),
    /// u32 values.
    U32(Vec<u32>),
}

impl HostData {
    /// Element type.
    pub fn dtype(&self) -> DType {
        self.as_slice().dtype()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Borrow as a [`HostSlice`].
    pub fn as_slice(&self) -> HostSlice<'_> {
        match self {
            HostData::F32(v) => HostSlice::F32(v),
            HostData::F16(v) => HostSlice::F16(v),
            HostData::BF16(v) => HostSlice::BF16(v),
            HostData::U32(v) => HostSlice::U32(v),
        }
    }

    /// Every value widened to f64 (u32 exactly; floats exactly).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            HostData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            HostData::F16(v) => v.iter().map(|&x| x.to_f64()).collect(),
            HostData::BF16(v) => v.iter().map(|&x| x.to_f64()).collect(),
            HostData::U32(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// The f32 values, or `None` for another dtype.
    pub fn into_f32(self) -> Option<Vec<f32>> {
        match self {
            HostData::F32(v) => Some(v),
            _ => None,
        }
    }
}
