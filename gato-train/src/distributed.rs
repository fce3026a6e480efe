//! Data-parallel training (`docs/design.md` §8, "Data parallel"): every rank holds the same parameters, computes
//! the gradients of its own shard of each global batch, and the ranks sum them with an all-reduce, so every rank
//! takes the same AdamW step. The [`Communicator`] trait is what the ranks share: NCCL between GPUs (later, in
//! `gato-cuda`), and [`LocalGroup`], an in-process implementation over threads, which the tests use to check
//! sharding, averaging and resume on the CPU.
//!
//! Gradients travel as one flat buffer (the parameters in name order) in buckets of [`BUCKET`] values; the loss
//! and target counts travel as f64. A step's gradient is the target-weighted mean over the whole global batch, as
//! if one process had accumulated every micro-batch: ranks sum `loss × targets` and gradient × targets, and
//! divide by the global target count after the all-reduce.

use std::sync::{Arc, Barrier, Mutex};

use gato_core::{Backend, EmbeddingMode, Error, HostSlice, Result, Shape, TokenBatch};
use gato_transformer::{Dropout, Gradients};

/// Values per all-reduce call: large enough that the per-call cost vanishes, small enough that a bucket can be
/// sent while the backward pass is still producing the next (on GPUs).
pub const BUCKET: usize = 1 << 22;

/// The ranks of a data-parallel run, as seen from one of them.
pub trait Communicator: Send + Sync {
    /// This rank, `0..world_size`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world_size(&self) -> usize;
    /// Replace `buf` by its element-wise sum over all ranks (every rank passes a buffer of the same length and
    /// receives the same sum).
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()>;
    /// [`Communicator::all_reduce_sum`] for f64 values (losses, target counts).
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()>;
}

/// Rank `rank`'s share of a global batch of `items`: the contiguous slice `rank·n/W .. (rank+1)·n/W`. The items
/// must divide evenly (so every rank takes the same number of micro-batches); the error names both counts.
pub fn shard<T>(items: &[T], rank: usize, world_size: usize) -> Result<&[T]> {
    if world_size == 0 || rank >= world_size || !items.len().is_multiple_of(world_size) {
        return Err(Error::invalid(
            "data-parallel shard",
            format!(
                "{} micro-batches over {world_size} ranks (rank {rank}): the global batch must divide evenly",
                items.len()
            ),
        ));
    }
    let n = items.len() / world_size;
    Ok(&items[rank * n..(rank + 1) * n])
}

/// Slots every rank of a [`LocalGroup`] writes its buffer into.
struct Shared<T> {
    slots: Mutex<Vec<Vec<T>>>,
    barrier: Barrier,
}

impl<T: Copy + Default + std::ops::AddAssign> Shared<T> {
    /// Deposit, wait for every rank, sum the slots in rank order (the same order, so the same bits, on every
    /// rank), wait again so no rank overwrites a slot another is still reading.
    fn all_reduce(&self, rank: usize, buf: &mut [T]) -> Result<()> {
        let poisoned = |_| Error::invalid("LocalGroup", "a rank panicked during an all-reduce");
        self.slots.lock().map_err(poisoned)?[rank] = buf.to_vec();
        self.barrier.wait();
        {
            let slots = self.slots.lock().map_err(poisoned)?;
            if let Some(s) = slots.iter().find(|s| s.len() != buf.len()) {
                let detail = format!(
                    "ranks passed buffers of {} and {} values",
                    buf.len(),
                    s.len()
                );
                drop(slots);
                self.barrier.wait();
                return Err(Error::invalid("LocalGroup all-reduce", detail));
            }
            buf.iter_mut().for_each(|x| *x = T::default());
            for s in slots.iter() {
                for (x, y) in buf.iter_mut().zip(s) {
                    *x += *y;
                }
            }
        }
        self.barrier.wait();
        Ok(())
    }
}

/// An in-process group of ranks (threads) that all-reduce through shared memory: the communicator of the CPU-side
/// tests of data-parallel training.
pub struct LocalGroup;

impl LocalGroup {
    /// `world_size` communicators, one per rank, to be moved to one thread each.
    pub fn ranks(world_size: usize) -> Vec<LocalCommunicator> {
        let f32s = Arc::new(Shared {
            slots: Mutex::new(vec![Vec::new(); world_size]),
            barrier: Barrier::new(world_size),
        });
        let f64s = Arc::new(Shared {
            slots: Mutex::new(vec![Vec::new(); world_size]),
            barrier: Barrier::new(world_size),
        });
        (0..world_size)
            .map(|rank| LocalCommunicator {
                rank,
                world_size,
                f32s: Arc::clone(&f32s),
                f64s: Arc::clone(&f64s),
            })
            .collect()
    }
}

/// One rank of a [`LocalGroup`].
pub struct LocalCommunicator {
    rank: usize,
    world_size: usize,
    f32s: Arc<Shared<f32>>,
    f64s: Arc<Shared<f64>>,
}

impl Communicator for LocalCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        self.f32s.all_reduce(self.rank, buf)
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.f64s.all_reduce(self.rank, buf)
    }
}

/// Loss and gradients of micro-batch `i` (patch positions and dropout masks from the seeds plus `i`); a
/// non-finite loss is an error.
pub(crate) fn micro_batch(
    model: &gato_transformer::GatoTransformer,
    be: &dyn Backend,
    batch: &TokenBatch,
    i: u64,
    mode: EmbeddingMode,
    dropout: Dropout,
) -> Result<(gato_transformer::LossReport, Gradients)> {
    let mode = match mode {
        EmbeddingMode::Train { seed } => EmbeddingMode::Train {
            seed: seed.wrapping_add(i),
        },
        EmbeddingMode::Eval => EmbeddingMode::Eval,
    };
    let dropout = Dropout {
        seed: dropout.seed.wrapping_add(i),
        ..dropout
    };
    let (loss, grads) = model.loss_and_gradients_with(be, batch, mode, dropout)?;
    if !loss.loss.is_finite() {
        return Err(Error::NonFinite {
            field: "loss".into(),
            index: 0,
            value: loss.loss,
        });
    }
    Ok((loss, grads))
}

/// The target-weighted sums of this rank's micro-batches: `(Σ loss·targets, Σ targets, Σ gradient·targets)`.
/// Micro-batch `i` draws its patch positions and dropout masks from the seeds plus `first + i`, so a rank's
/// micro-batches get the seeds they would have in one process accumulating the whole global batch.
pub(crate) fn local_sums(
    model: &gato_transformer::GatoTransformer,
    be: &dyn Backend,
    batches: &[&TokenBatch],
    first: u64,
    mode: EmbeddingMode,
    dropout: Dropout,
) -> Result<(f64, usize, Gradients)> {
    let mut sum = Gradients::default();
    let (mut loss_sum, mut total) = (0.0, 0usize);
    for (i, batch) in batches.iter().enumerate() {
        let (loss, grads) = micro_batch(model, be, batch, first + i as u64, mode, dropout)?;
        loss_sum += loss.loss * loss.targets as f64;
        total += loss.targets;
        for (name, g) in grads.iter() {
            sum.add(be, name.clone(), be.affine(g, loss.targets as f32, 0.0)?)?;
        }
    }
    Ok((loss_sum, total, sum))
}

/// Sum `local` over the ranks and divide by `targets` (the global count): the flat buffer in `names` order, in
/// buckets; parameters a rank has no gradient for contribute zeros. Returns the mean gradients on `be`.
pub(crate) fn all_reduce_mean(
    be: &dyn Backend,
    comm: &dyn Communicator,
    names: &[(String, Vec<usize>)],
    local: &Gradients,
    targets: f64,
) -> Result<Gradients> {
    let total: usize = names.iter().map(|(_, d)| d.iter().product::<usize>()).sum();
    let mut flat = Vec::with_capacity(total);
    for (name, dims) in names {
        match local.get(name) {
            Some(g) => flat.extend(be.download(g)?.into_f32().unwrap_or_default()),
            None => flat.extend(std::iter::repeat_n(0.0, dims.iter().product())),
        }
    }
    for bucket in flat.chunks_mut(BUCKET) {
        comm.all_reduce_sum(bucket)?;
    }
    let scale = if targets > 0.0 { 1.0 / targets } else { 0.0 };
    let mut mean = Gradients::default();
    let mut at = 0;
    for (name, dims) in names {
        let n: usize = dims.iter().product();
        let values: Vec<f32> = flat[at..at + n]
            .iter()
            .map(|&x| (x as f64 * scale) as f32)
            .collect();
        at += n;
        let t = be.upload(HostSlice::F32(&values), &Shape::new(dims.clone()))?;
        mean.add(be, name.clone(), t)?;
    }
    Ok(mean)
}
