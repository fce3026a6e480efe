//! Recycled output buffers, so the per-token acting loop allocates nothing (design.md §7; issue 7).
//!
//! Every op returns a new tensor (the [`gato_core::Backend`] design rules). Allocating each output costs two heap
//! allocations (the data and its reference count) per op — hundreds per decoded token. The pool keeps the
//! storage of outputs up to [`MAX_BUFFER_BYTES`] and holds one handle to each: a buffer whose only handle is the
//! pool's is free, and the next op asking for that dtype and at most that many elements takes it, refits it to
//! the new shape inside its existing capacity and zero-fills it. Once the set of sizes a loop uses has been seen,
//! the loop allocates nothing.
//!
//! Invariants:
//! - a buffer is handed out only while the pool's handle is its only one (checked with `Arc::get_mut`, which
//!   synchronises with the last handle's drop), so no tensor ever sees its data change;
//! - while a tensor holds a pooled buffer, the pool's handle makes it shared, so the one in-place op
//!   ([`gato_core::LayoutOps::slice_assign`]) copies it first (copy-on-write) and never writes a buffer the pool owns.
//!   Buffers meant for in-place writes (`zeros`, the KV cache) therefore do not come from the pool;
//! - bounded: at most [`MAX_ENTRIES`] buffers and [`MAX_TOTAL_BYTES`] of capacity; larger outputs (a 1024-token
//!   forward's activations) are allocated and freed as before.

use std::sync::{Arc, Mutex};

use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

use crate::storage::CpuStorage;
use gato_core::dtype::DType;
use gato_core::error::{Error, Result};
use gato_core::shape::Shape;

/// Outputs larger than this are not pooled (`small`: an observation's 40 × 3072 feed-forward activation is 480 KiB).
pub const MAX_BUFFER_BYTES: usize = 4 << 20;
/// Most buffers the pool holds.
pub const MAX_ENTRIES: usize = 256;
/// Most bytes of capacity the pool holds.
pub const MAX_TOTAL_BYTES: usize = 64 << 20;

/// A pooled buffer and its capacity in elements.
struct Entry {
    storage: Arc<CpuStorage>,
    capacity: usize,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.capacity * self.storage.dtype().size_in_bytes()
    }
}

/// The buffers the pool holds, and the sum of their capacities in bytes.
struct Held {
    list: Vec<Entry>,
    bytes: usize,
}

/// The CPU backend's pool of output buffers.
pub(crate) struct BufferPool {
    entries: Mutex<Held>,
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.entries.lock().map_or(0, |e| e.list.len());
        write!(f, "BufferPool({n} buffers)")
    }
}

/// An output buffer owned by one op until [`BufferPool::finish`] turns it into a tensor.
pub(crate) struct Output {
    storage: Arc<CpuStorage>,
    capacity: usize,
    pooled: bool,
}

impl Output {
    /// The storage to write (the op holds the only handle).
    pub(crate) fn storage_mut(&mut self, op: &'static str) -> Result<&mut CpuStorage> {
        Arc::get_mut(&mut self.storage).ok_or_else(|| Error::Backend {
            backend: crate::CPU_BACKEND_NAME.into(),
            op,
            detail: "output buffer shared before it was written".into(),
        })
    }

    /// The f32 values to write.
    pub(crate) fn f32_mut(&mut self, op: &'static str) -> Result<&mut [f32]> {
        match self.storage_mut(op)? {
            CpuStorage::F32(a) => a.as_slice_mut().ok_or_else(|| not_contiguous(op)),
            other => Err(Error::DType {
                op,
                detail: format!("output buffer has dtype {}, expected f32", other.dtype()),
            }),
        }
    }
}

fn not_contiguous(op: &'static str) -> Error {
    Error::Backend {
        backend: crate::CPU_BACKEND_NAME.into(),
        op,
        detail: "non-contiguous storage".into(),
    }
}

/// Reshape `a` to `dims` (`n` elements) inside its vector's capacity, zero-filled; returns the capacity.
fn refit<T: Clone>(a: &mut ArrayD<T>, dims: &[usize], n: usize, zero: T) -> Result<usize> {
    // An empty array holds no heap memory, so the swap allocates nothing.
    let empty = ArrayD::from_shape_vec(IxDyn(&[0]), Vec::new());
    let old = std::mem::replace(a, empty.map_err(|e| shape_error(e.to_string()))?);
    let (mut v, _) = old.into_raw_vec_and_offset();
    v.clear();
    v.resize(n, zero);
    let capacity = v.capacity();
    *a = ArrayD::from_shape_vec(IxDyn(dims), v).map_err(|e| shape_error(e.to_string()))?;
    Ok(capacity)
}

fn shape_error(detail: String) -> Error {
    Error::Backend {
        backend: crate::CPU_BACKEND_NAME.into(),
        op: "output buffer",
        detail,
    }
}

/// A zeroed storage of `dtype` and `shape` (`n` elements).
pub(crate) fn zeroed(dtype: DType, shape: &Shape) -> CpuStorage {
    let dims = IxDyn(shape.dims());
    match dtype {
        DType::F32 => CpuStorage::F32(ArrayD::zeros(dims)),
        DType::F16 => CpuStorage::F16(ArrayD::from_elem(dims, f16::ZERO)),
        DType::BF16 => CpuStorage::BF16(ArrayD::from_elem(dims, bf16::ZERO)),
        DType::U32 => CpuStorage::U32(ArrayD::zeros(dims)),
    }
}

impl BufferPool {
    /// An empty pool (its entry list is allocated once, here).
    pub(crate) fn new() -> Self {
        BufferPool {
            entries: Mutex::new(Held {
                list: Vec::with_capacity(MAX_ENTRIES),
                bytes: 0,
            }),
        }
    }

    /// A zeroed buffer of `dtype` and `shape`: a free pooled one that fits (the smallest), else a new one.
    pub(crate) fn take(&self, op: &'static str, dtype: DType, shape: &Shape) -> Result<Output> {
        let n = shape.checked_elem_count(op)?;
        let bytes = n.saturating_mul(dtype.size_in_bytes());
        if bytes > MAX_BUFFER_BYTES {
            return Ok(Output {
                storage: Arc::new(zeroed(dtype, shape)),
                capacity: n,
                pooled: false,
            });
        }
        if let Ok(mut held) = self.entries.lock() {
            let mut best: Option<(usize, usize)> = None;
            for (i, e) in held.list.iter().enumerate() {
                let fits = e.capacity >= n && e.storage.dtype() == dtype;
                if fits
                    && Arc::strong_count(&e.storage) == 1
                    && best.is_none_or(|(_, c)| e.capacity < c)
                {
                    best = Some((i, e.capacity));
                }
            }
            if let Some((i, _)) = best {
                let mut e = held.list.swap_remove(i);
                held.bytes -= e.bytes();
                drop(held);
                if let Some(s) = Arc::get_mut(&mut e.storage) {
                    let dims = shape.dims();
                    let capacity = match s {
                        CpuStorage::F32(a) => refit(a, dims, n, 0.0)?,
                        CpuStorage::F16(a) => refit(a, dims, n, f16::ZERO)?,
                        CpuStorage::BF16(a) => refit(a, dims, n, bf16::ZERO)?,
                        CpuStorage::U32(a) => refit(a, dims, n, 0)?,
                    };
                    return Ok(Output {
                        storage: e.storage,
                        capacity,
                        pooled: true,
                    });
                }
            }
        }
        Ok(Output {
            storage: Arc::new(zeroed(dtype, shape)),
            capacity: n,
            pooled: true,
        })
    }

    /// The tensor of a written output; the pool keeps a handle to reuse the buffer once the tensor is dropped.
    /// When the pool is full, it first frees buffers no tensor holds (oldest first), then forgets the oldest
    /// buffers still held (long-lived tensors such as uploaded weights: they stay with their tensors and are
    /// freed with them), so the buffers a loop keeps reusing end up being the ones pooled.
    pub(crate) fn finish(&self, shape: Shape, out: Output) -> gato_core::tensor::Tensor {
        let dtype = out.storage.dtype();
        if out.pooled {
            if let Ok(mut held) = self.entries.lock() {
                let entry = Entry {
                    storage: Arc::clone(&out.storage),
                    capacity: out.capacity,
                };
                while !held.list.is_empty()
                    && (held.list.len() >= MAX_ENTRIES
                        || held.bytes + entry.bytes() > MAX_TOTAL_BYTES)
                {
                    let i = held
                        .list
                        .iter()
                        .position(|e| Arc::strong_count(&e.storage) == 1)
                        .unwrap_or(0);
                    let gone = held.list.remove(i);
                    held.bytes -= gone.bytes();
                }
                if held.bytes + entry.bytes() <= MAX_TOTAL_BYTES {
                    held.bytes += entry.bytes();
                    held.list.push(entry);
                }
            }
        }
        gato_core::tensor::Tensor::from_storage(shape, dtype, out.storage)
    }

    /// Buffers held, and how many of them are free (for tests and diagnostics).
    pub(crate) fn counts(&self) -> (usize, usize) {
        self.entries.lock().map_or((0, 0), |held| {
            let free = held
                .list
                .iter()
                .filter(|e| Arc::strong_count(&e.storage) == 1)
                .count();
            (held.list.len(), free)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuBackend;
    use gato_core::backend::UnaryOp;
    use gato_core::dtype::HostSlice;
    use gato_core::prelude::*;

    fn ptr(be: &CpuBackend, t: &gato_core::tensor::Tensor) -> *const f32 {
        be.f32s("test", "t", t).unwrap().as_ptr()
    }

    #[test]
    fn a_dropped_output_is_reused_zeroed_and_a_held_one_never() {
        let be = CpuBackend::new(Some(1)).unwrap();
        let x = be
            .upload(HostSlice::F32(&[-1.0, 2.0, -3.0, 4.0]), &Shape::from([4]))
            .unwrap();
        let a = be.unary(UnaryOp::Relu, &x).unwrap();
        let a_ptr = ptr(&be, &a);
        let b = be.unary(UnaryOp::Neg, &x).unwrap();
        assert_ne!(ptr(&be, &b), a_ptr, "a held buffer was handed out again");
        let y = be
            .upload(HostSlice::F32(&[5.0, -6.0]), &Shape::from([2]))
            .unwrap();
        drop(a);
        // Fewer elements fit in the freed buffer: reused, refitted, and no stale value shows.
        let c = be.unary(UnaryOp::Relu, &y).unwrap();
        assert_eq!(ptr(&be, &c), a_ptr, "the freed buffer was not reused");
        assert_eq!(be.download(&c).unwrap().into_f32().unwrap(), [5.0, 0.0]);
        assert_eq!(
            be.download(&b).unwrap().into_f32().unwrap(),
            [1.0, -2.0, 3.0, -4.0]
        );
    }

    #[test]
    fn writing_into_a_pooled_output_copies_it_first() {
        let be = CpuBackend::new(Some(1)).unwrap();
        let x = be
            .upload(HostSlice::F32(&[1.0; 6]), &Shape::from([2, 3]))
            .unwrap();
        let mut a = be.affine(&x, 2.0, 0.0).unwrap();
        let pooled = ptr(&be, &a);
        let src = be
            .upload(HostSlice::F32(&[9.0; 3]), &Shape::from([1, 3]))
            .unwrap();
        be.slice_assign(&mut a, &src, 0, 1).unwrap();
        assert_ne!(
            ptr(&be, &a),
            pooled,
            "the pool's buffer was written in place"
        );
        assert_eq!(
            be.download(&a).unwrap().into_f32().unwrap(),
            [2.0, 2.0, 2.0, 9.0, 9.0, 9.0]
        );
        // `zeros` is never pooled, so the KV cache writes in place.
        let mut z = be.zeros(&Shape::from([2, 3]), DType::F32).unwrap();
        let z_ptr = ptr(&be, &z);
        be.slice_assign(&mut z, &src, 0, 0).unwrap();
        assert_eq!(ptr(&be, &z), z_ptr, "zeros were copied on the first write");
    }

    #[test]
    fn the_pool_stays_within_its_bounds() {
        let be = CpuBackend::new(Some(1)).unwrap();
        let mut held = Vec::new();
        for n in 1..(MAX_ENTRIES + 50) {
            // Half of them held (as weights are), half dropped at once; sizes all different.
            let t = be.zeros(&Shape::from([n * 97]), DType::F32).unwrap();
            let y = be.affine(&t, 1.0, 1.0).unwrap();
            if n % 2 == 0 {
                held.push(y);
            }
        }
        let (entries, free) = be.buffers.counts();
        assert!(entries <= MAX_ENTRIES, "{entries} buffers pooled");
        assert!(free <= entries);
        let held = be.buffers.entries.lock().unwrap();
        let total: usize = held.list.iter().map(Entry::bytes).sum();
        assert_eq!(total, held.bytes, "the running total drifted");
        assert!(total <= MAX_TOTAL_BYTES, "{total} bytes pooled");
        drop(held);
        // Larger than a pooled buffer may be: allocated and freed on its own.
        let big = MAX_BUFFER_BYTES / 4 + 1;
        let before = be.buffers.counts().0;
        let t = be.zeros(&Shape::from([big]), DType::F32).unwrap();
        drop(be.affine(&t, 1.0, 0.0).unwrap());
        assert_eq!(be.buffers.counts().0, before);
    }
}
