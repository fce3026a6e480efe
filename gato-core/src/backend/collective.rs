//! Collectives for data-parallel training (design.md §8, "Data parallel"): the [`Communicator`] the ranks of a
//! run share, and the backend family that creates one. A GPU backend implements it with NCCL (`gato-cuda`); the
//! defaults say the backend has none, so data parallelism across processes needs a backend that does. In-process
//! groups for tests (`gato_train::LocalGroup`) implement [`Communicator`] directly.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

use super::Backend;

/// The ranks of a data-parallel run, as seen from one of them.
pub trait Communicator: Send + Sync {
    /// This rank, `0..world_size`.
    fn rank(&self) -> usize;

    /// Number of ranks.
    fn world_size(&self) -> usize;

    /// Replace `buf` (an f32 tensor on `be`) by its element-wise sum over all ranks, in place (copy-on-write:
    /// another handle to the old storage keeps the old values). Every rank passes a tensor of the same size and
    /// receives the same sum.
    fn all_reduce_sum(&self, be: &dyn Backend, buf: &mut Tensor) -> Result<()>;

    /// The same for f64 values on the host (the loss and target counts).
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()>;
}

/// Creating a group of ranks (a family of [`super::Backend`]).
pub trait CollectiveOps {
    /// A new group id, made by rank 0 and given to every other rank before they join (NCCL's unique id: it holds
    /// rank 0's address, so ranks on other machines can reach it). The default: this backend has no collectives.
    fn collective_id(&self) -> Result<Vec<u8>> {
        Err(Error::Unsupported {
            backend: std::any::type_name::<Self>().to_string(),
            op: "collective_id (data parallel across processes needs NCCL: --backend cuda)",
        })
    }

    /// Join the group `id` as `rank` of `world_size`, on this backend's device; returns once every rank has
    /// joined.
    fn communicator(
        &self,
        id: &[u8],
        rank: usize,
        world_size: usize,
    ) -> Result<Arc<dyn Communicator>> {
        let _ = (id, rank, world_size);
        Err(Error::Unsupported {
            backend: std::any::type_name::<Self>().to_string(),
            op: "communicator (data parallel across processes needs NCCL: --backend cuda)",
        })
    }
}
