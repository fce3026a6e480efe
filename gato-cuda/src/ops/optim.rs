//! The optimiser's ops: the trait's defaults through the host for now (correct, slow); NVRTC kernels for the
//! sum of squares and a fused AdamW step are the GPU training issue's.

use gato_core::OptimOps;

use crate::backend::CudaBackend;

impl OptimOps for CudaBackend {}
