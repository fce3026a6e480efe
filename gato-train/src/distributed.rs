//! Data-parallel training (`docs/design.md` §8, "Data parallel"): every rank holds the same parameters, computes
//! the gradients of its own shard of each global batch, and the ranks sum them with an all-reduce, so every rank
//! takes the same AdamW step. The [`Communicator`] trait (gato-core) is what the ranks share: NCCL between GPUs
//! (`gato-cuda`, created through the backend's `CollectiveOps`), and [`LocalGroup`], an in-process implementation
//! over threads, which the tests use to check sharding, averaging and resume on the CPU. [`rendezvous`] is how the
//! processes of a run agree on the group's id.
//!
//! Gradients travel in buckets of whole parameters (name order) of about [`BUCKET`] values, each gathered into one
//! flat tensor on the backend (no host copy with NCCL); the loss and target counts travel as f64. A step's gradient is the target-weighted mean over the whole global batch, as
//! if one process had accumulated every micro-batch: ranks sum `loss × targets` and gradient × targets, and
//! divide by the global target count after the all-reduce.

use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

pub use gato_core::Communicator;
use gato_core::{Backend, EmbeddingMode, Error, HostSlice, Result, Shape, Tensor, TokenBatch};
use gato_transformer::{Dropout, Gradients};

/// Values per all-reduce call: large enough that the per-call cost vanishes, small enough that a bucket can be
/// sent while the backward pass is still producing the next (on GPUs).
pub const BUCKET: usize = 1 << 22;

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

impl LocalCommunicator {
    /// The all-reduce on host values: every rank's `buf` replaced by the sum over ranks, added in rank order.
    pub fn all_reduce_host(&self, buf: &mut [f32]) -> Result<()> {
        self.f32s.all_reduce(self.rank, buf)
    }
}

impl Communicator for LocalCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    /// Through the host: download, sum in rank order, upload.
    fn all_reduce_sum(&self, be: &dyn Backend, buf: &mut Tensor) -> Result<()> {
        let mut host = be.download(buf)?.into_f32().ok_or_else(|| Error::DType {
            op: "all_reduce_sum",
            detail: format!("buffer has dtype {}, expected F32", buf.dtype()),
        })?;
        self.all_reduce_host(&mut host)?;
        *buf = be.upload(HostSlice::F32(&host), buf.shape())?;
        Ok(())
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.f64s.all_reduce(self.rank, buf)
    }
}

/// Loss (the mean over its targets, a `[1]` tensor left on the backend), target count and gradients of
/// micro-batch `i` (patch positions and dropout masks from the seeds plus `i`).
pub(crate) fn micro_batch(
    model: &gato_transformer::GatoTransformer,
    be: &dyn Backend,
    batch: &TokenBatch,
    i: u64,
    mode: EmbeddingMode,
    dropout: Dropout,
) -> Result<(Tensor, usize, Gradients)> {
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
    model.loss_and_gradients_device(be, batch, mode, dropout)
}

/// The target-weighted sums of this rank's micro-batches, on the backend: `(Σ loss·targets [1], Σ targets,
/// Σ gradient·targets)`. Micro-batch `i` draws its patch positions and dropout masks from the seeds plus
/// `first + i`, so a rank's micro-batches get the seeds they would have in one process accumulating the whole
/// global batch.
pub(crate) fn local_sums(
    model: &gato_transformer::GatoTransformer,
    be: &dyn Backend,
    batches: &[&TokenBatch],
    first: u64,
    mode: EmbeddingMode,
    dropout: Dropout,
) -> Result<(Tensor, usize, Gradients)> {
    let mut sum = Gradients::default();
    let mut loss_sum = be.zeros(&Shape::new([1]), gato_core::DType::F32)?;
    let mut total = 0usize;
    for (i, batch) in batches.iter().enumerate() {
        let (loss, targets, grads) =
            micro_batch(model, be, batch, first + i as u64, mode, dropout)?;
        let weighted = be.affine(&loss, targets as f32, 0.0)?;
        loss_sum = be.binary(gato_core::BinaryOp::Add, &loss_sum, &weighted)?;
        total += targets;
        for (name, g) in grads.iter() {
            sum.add(be, name.clone(), be.affine(g, targets as f32, 0.0)?)?;
        }
    }
    Ok((loss_sum, total, sum))
}

/// Sum `local` over the ranks and divide by `targets` (the global count), on the backend: parameters in `names`
/// order are gathered into buckets of about [`BUCKET`] values (whole parameters; one larger than that is a bucket
/// of its own), each bucket all-reduced as one flat tensor, scaled, and sliced back. Parameters a rank has no
/// gradient for contribute zeros. Returns the mean gradients on `be`.
pub(crate) fn all_reduce_mean(
    be: &dyn Backend,
    comm: &dyn Communicator,
    names: &[(String, Vec<usize>)],
    local: &Gradients,
    targets: f64,
) -> Result<Gradients> {
    all_reduce_mean_in(be, comm, names, local, targets, BUCKET)
}

/// [`all_reduce_mean`] with buckets of about `bucket_size` values.
fn all_reduce_mean_in(
    be: &dyn Backend,
    comm: &dyn Communicator,
    names: &[(String, Vec<usize>)],
    local: &Gradients,
    targets: f64,
    bucket_size: usize,
) -> Result<Gradients> {
    let scale = if targets > 0.0 { 1.0 / targets } else { 0.0 };
    let mut mean = Gradients::default();
    let mut bucket: Vec<(&String, &Vec<usize>)> = Vec::new();
    let mut size = 0usize;
    let mut flush = |bucket: &mut Vec<(&String, &Vec<usize>)>| -> Result<()> {
        if bucket.is_empty() {
            return Ok(());
        }
        let mut parts = Vec::with_capacity(bucket.len());
        for (name, dims) in bucket.iter() {
            let n: usize = dims.iter().product();
            let flat = match local.get(name) {
                Some(g) => g.reshape([n])?,
                None => be.zeros(&Shape::new([n]), gato_core::DType::F32)?,
            };
            parts.push(flat);
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        let mut flat = be.concat(&refs, 0)?;
        comm.all_reduce_sum(be, &mut flat)?;
        let flat = be.affine(&flat, scale as f32, 0.0)?;
        let mut at = 0;
        for (name, dims) in bucket.drain(..) {
            let n: usize = dims.iter().product();
            let g = be.slice(&flat, 0, at, n)?.reshape(dims.as_slice())?;
            at += n;
            mean.add(be, name.clone(), g)?;
        }
        Ok(())
    };
    for (name, dims) in names {
        let n: usize = dims.iter().product();
        if size > 0 && size + n > bucket_size {
            flush(&mut bucket)?;
            size = 0;
        }
        bucket.push((name, dims));
        size += n;
    }
    flush(&mut bucket)?;
    Ok(mean)
}

/// How the processes of a run agree on a group id: rank 0 makes one (`make`, the backend's
/// [`gato_core::CollectiveOps::collective_id`]) and writes it as hex to `file` (atomically: a temporary beside
/// it, then a rename), every other rank waits up to `timeout` for the file and reads it. A file on a filesystem
/// every machine sees serves a run across machines. Rank 0 replaces a file left by an earlier run; the others
/// accept only a file written after `not_before` (the start of this run), so none joins a stale group.
pub fn rendezvous(
    file: &Path,
    rank: usize,
    make: impl FnOnce() -> Result<Vec<u8>>,
    not_before: std::time::SystemTime,
    timeout: Duration,
) -> Result<Vec<u8>> {
    let bad = |detail: String| Error::invalid("rendezvous", detail);
    if rank == 0 {
        let id = make()?;
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, format!("{hex}\n"))
            .and_then(|_| std::fs::rename(&tmp, file))
            .map_err(|e| bad(format!("{}: {e}", file.display())))?;
        return Ok(id);
    }
    let start = Instant::now();
    loop {
        let fresh = std::fs::metadata(file)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= not_before);
        if fresh {
            let text = std::fs::read_to_string(file)
                .map_err(|e| bad(format!("{}: {e}", file.display())))?;
            let text = text.trim();
            let id = (0..text.len())
                .step_by(2)
                .map(|i| {
                    text.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect::<Option<Vec<u8>>>()
                .filter(|v| !v.is_empty() && text.len() % 2 == 0)
                .ok_or_else(|| bad(format!("{}: not a hex group id: {text:?}", file.display())))?;
            return Ok(id);
        }
        if start.elapsed() >= timeout {
            return Err(bad(format!(
                "rank {rank}: no group id from rank 0 in {} after {:.0} s (is rank 0 running, and is the file on a \
                 filesystem both see?)",
                file.display(),
                timeout.as_secs_f64()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buckets split between whole parameters (one larger than a bucket goes alone), a parameter one rank has
    /// no gradient for counts as zeros, and every rank gets `Σ / targets` in the parameters' shapes.
    #[test]
    fn buckets_carry_whole_parameters_and_missing_gradients_count_as_zero() {
        let cpu = gato_cpu::CpuBackend::new(Some(1)).unwrap();
        let be: &dyn Backend = &cpu;
        let names: Vec<(String, Vec<usize>)> = vec![
            ("a".into(), vec![3]),
            ("b".into(), vec![2, 2]),
            ("c".into(), vec![7]),
            ("d".into(), vec![1]),
        ];
        let comms = LocalGroup::ranks(2);
        let got: Vec<Vec<(String, Vec<f32>)>> = std::thread::scope(|s| {
            let hs: Vec<_> = comms
                .iter()
                .map(|c| {
                    let names = &names;
                    s.spawn(move || {
                        let r = c.rank() as f32 + 1.0;
                        let mut g = Gradients::default();
                        for (name, dims) in names {
                            if c.rank() == 1 && name == "b" {
                                continue;
                            }
                            let n: usize = dims.iter().product();
                            let v: Vec<f32> = (0..n).map(|i| r * (i as f32 + 1.0)).collect();
                            let t = be
                                .upload(HostSlice::F32(&v), &Shape::new(dims.clone()))
                                .unwrap();
                            g.add(be, name.clone(), t).unwrap();
                        }
                        let mean = all_reduce_mean_in(be, c, names, &g, 4.0, 5).unwrap();
                        mean.iter()
                            .map(|(n, t)| {
                                assert_eq!(
                                    t.dims(),
                                    names.iter().find(|x| &x.0 == n).unwrap().1.as_slice()
                                );
                                (n.clone(), be.download(t).unwrap().into_f32().unwrap())
                            })
                            .collect()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(got[0], got[1], "ranks disagree");
        for (name, v) in &got[0] {
            let ranks = if name == "b" { 1.0 } else { 3.0 };
            for (i, x) in v.iter().enumerate() {
                assert_eq!(*x, ranks * (i as f32 + 1.0) / 4.0, "{name}[{i}]");
            }
        }
    }
}
