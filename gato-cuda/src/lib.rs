//! # gato-cuda
//!
//! The CUDA backend of gato-rs, registered as `cuda` through `inventory` and selected with `--backend cuda`.
//!
//! cudarc is built with `dynamic-loading` and an explicit CUDA version feature, so this crate compiles on machines
//! with no CUDA toolkit and no GPU. At run time cudarc's loaders *panic* when a library is missing, so
//! [`probe`] first opens the driver library itself (with `libloading`) and only then calls into cudarc; on a
//! machine without a driver it reports `no CUDA driver found (...)` and nothing panics.
//!
//! Every `Backend` op runs on the GPU, training's included: matrix products through cuBLAS (strided-batched
//! SGEMM, full f32 — no TF32; tensor-core GEMMs for 16-bit weights), everything else in CUDA C kernels
//! (`src/kernels.cu` for the forward ops, `src/kernels_backward.cu` for the backward ops, the fused loss and
//! AdamW) compiled with NVRTC at first use and cached per context. Causal attention never materialises the
//! `T × T` score matrix: an online softmax, tiled through shared memory for full sequences and one warp per query
//! row when decoding; its backward is flash-style from the saved log-sum-exp. Data parallelism runs over NCCL
//! ([`NcclCommunicator`]). The backend passes the same conformance suite as the CPU backend, forward and backward
//! (`tests/conformance.rs`), where a GPU is present; without one each test prints why it skipped, and the kernels
//! are checked instead by compiling them to PTX (`tests/nvrtc.rs`) and by running them on the CPU under a host
//! emulation of CUDA C against the f64 reference (`tests/emulated_*.rs`).

#![warn(missing_docs)]

mod backend;
mod collective;
mod ops;
mod probe;
mod storage;

pub use backend::{CudaBackend, KERNELS};
pub use collective::{NcclCommunicator, NCCL_ID_BYTES};
pub use ops::{attention_backward_plan, attention_forward_plan};
pub use probe::{decide, device_info, driver_library, findings, probe, DeviceInfo, ProbeFindings};
pub use storage::CudaStorage;

use std::sync::Arc;

use gato_core::registry::{BackendEntry, BackendOptions};
use gato_core::{Backend, Error, Result};

/// Registered name of the CUDA backend.
pub const CUDA_BACKEND_NAME: &str = "cuda";

/// The registry's constructor: probe device `options.device` ([`findings`] → [`decide`]), then open it. Every
/// refusal, and a failure to create the context, is [`Error::BackendUnavailable`] ("CUDA backend unavailable: …").
fn create(options: &BackendOptions) -> Result<Arc<dyn Backend>> {
    let unavailable = |reason: String| Error::BackendUnavailable {
        name: CUDA_BACKEND_NAME.into(),
        display: CUDA_BACKEND_NAME.to_uppercase(),
        reason,
    };
    decide(&findings(options.device)).map_err(unavailable)?;
    // cudarc panics rather than erring on some library faults; the probe above makes that unlikely, and a panic
    // that still happens becomes the same clear error.
    let ordinal = options.device;
    match gato_core::panics::catch_quietly(move || CudaBackend::new(ordinal)) {
        Ok(Ok(be)) => Ok(Arc::new(be)),
        Ok(Err(e)) => Err(unavailable(e.to_string())),
        Err(msg) => Err(unavailable(format!(
            "creating the CUDA context panicked: {msg}"
        ))),
    }
}

inventory::submit! {
    BackendEntry {
        name: CUDA_BACKEND_NAME,
        description: "NVIDIA GPUs through cudarc (driver API, cuBLAS, NVRTC); libraries loaded at run time",
        probe,
        create,
    }
}
