//! Data-parallel collectives over NCCL ([`gato_core::CollectiveOps`]): one process per GPU, each a rank of one
//! NCCL communicator on its backend's stream, so an all-reduce is ordered after the backward kernels that
//! produced the gradients and before the optimiser's kernels, with no host copy. NCCL is opened at run time like
//! the other CUDA libraries (cudarc's `nccl` feature with dynamic loading); without it every call is an error
//! naming the missing library, never a panic.

use std::sync::{Arc, Mutex};

use cudarc::nccl::safe::{Comm, Id, ReduceOp};
use gato_core::{Backend, CollectiveOps, Communicator, Error, Result, Tensor};

use crate::backend::{err, CudaBackend};
use crate::storage::{CudaStorage, CUDA_BACKEND_NAME};

/// Bytes of an NCCL unique id.
pub const NCCL_ID_BYTES: usize = 128;

fn unavailable(detail: impl std::fmt::Display) -> Error {
    Error::BackendUnavailable {
        name: "nccl".into(),
        display: "NCCL".into(),
        reason: detail.to_string(),
    }
}

/// NCCL must load before cudarc touches it (cudarc panics on a missing library).
fn probe_nccl() -> Result<()> {
    // SAFETY: only tries to open the library by its usual names.
    if unsafe { cudarc::nccl::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(unavailable(
            "libnccl.so not found (install NCCL, e.g. the nvidia-nccl-cu13 wheel, put its lib directory on \
             LD_LIBRARY_PATH, and where it ships only libnccl.so.2, link libnccl.so to it)",
        ))
    }
}

/// An NCCL communicator that may move between threads: NCCL ties a communicator to a device, not to a thread,
/// and the mutex keeps calls on it from overlapping.
struct SharedComm(Comm);

// SAFETY: an NCCL communicator handle is not bound to the thread that created it; every use goes through the
// `Mutex` in `NcclCommunicator`, so no two threads call NCCL on it at once.
unsafe impl Send for SharedComm {}

/// One rank of an NCCL group (see the module docs).
pub struct NcclCommunicator {
    comm: Mutex<SharedComm>,
    rank: usize,
    world_size: usize,
}

impl std::fmt::Debug for NcclCommunicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NcclCommunicator(rank {} of {})",
            self.rank, self.world_size
        )
    }
}

impl NcclCommunicator {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, SharedComm>> {
        self.comm
            .lock()
            .map_err(|_| err("all_reduce", "NCCL communicator poisoned"))
    }
}

impl Communicator for NcclCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn all_reduce_sum(&self, _be: &dyn Backend, buf: &mut Tensor) -> Result<()> {
        const OP: &str = "all_reduce_sum";
        let n = buf.elem_count();
        if n == 0 {
            return Ok(());
        }
        let comm = self.lock()?;
        // In place on this handle's own storage (copy-on-write on the communicator's stream, the backend's).
        let stream = comm.0.stream();
        let storage = buf.storage_for_write::<CudaStorage>(OP, CUDA_BACKEND_NAME, |shared| {
            shared.copy_on(&stream).map_err(|e| err(OP, e))
        })?;
        let CudaStorage::F32(slice) = storage else {
            return Err(Error::DType {
                op: OP,
                detail: format!("buffer has dtype {}, expected F32", storage.dtype()),
            });
        };
        let mut view = slice.slice_mut(0..n);
        comm.0
            .all_reduce_in_place(&mut view, &ReduceOp::Sum)
            .map(|_| ())
            .map_err(|e| err(OP, format!("NCCL: {e:?}")))
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        const OP: &str = "all_reduce_sum_f64";
        if buf.is_empty() {
            return Ok(());
        }
        let comm = self.lock()?;
        let stream = comm.0.stream();
        let mut dev = stream.clone_htod(buf).map_err(|e| err(OP, e))?;
        comm.0
            .all_reduce_in_place(&mut dev, &ReduceOp::Sum)
            .map_err(|e| err(OP, format!("NCCL: {e:?}")))?;
        let host = stream.clone_dtoh(&dev).map_err(|e| err(OP, e))?;
        buf.copy_from_slice(&host[..buf.len()]);
        Ok(())
    }
}

impl CollectiveOps for CudaBackend {
    fn collective_id(&self) -> Result<Vec<u8>> {
        probe_nccl()?;
        let id = Id::new().map_err(|e| unavailable(format!("ncclGetUniqueId: {e:?}")))?;
        Ok(id.internal().iter().map(|&c| c as u8).collect())
    }

    fn communicator(
        &self,
        id: &[u8],
        rank: usize,
        world_size: usize,
    ) -> Result<Arc<dyn Communicator>> {
        if world_size == 0 || rank >= world_size {
            return Err(Error::OutOfRange {
                op: "communicator",
                what: "rank".into(),
                value: rank.to_string(),
                allowed: format!("0..{world_size} (the world size)"),
            });
        }
        let bytes: [u8; NCCL_ID_BYTES] = id.try_into().map_err(|_| {
            Error::invalid(
                "communicator",
                format!(
                    "an NCCL group id has {NCCL_ID_BYTES} bytes, got {}",
                    id.len()
                ),
            )
        })?;
        probe_nccl()?;
        let id = Id::uninit(bytes.map(|b| b as std::ffi::c_char));
        let comm = Comm::from_rank(self.stream.clone(), rank, world_size, id).map_err(|e| {
            err(
                "communicator",
                format!("ncclCommInitRank (rank {rank} of {world_size}): {e:?}"),
            )
        })?;
        Ok(Arc::new(NcclCommunicator {
            comm: Mutex::new(SharedComm(comm)),
            rank,
            world_size,
        }))
    }
}
