//! Per-thread scratch vectors for the kernels, kept between calls so a warm acting loop allocates nothing
//! (issue 7): one-row partial sums, widened weight rows, packed panels, attention scores.

use std::cell::RefCell;
use std::thread::LocalKey;

/// A thread-local scratch vector.
pub(crate) type Scratch = LocalKey<RefCell<Vec<f32>>>;

/// Run `f` with this thread's vector in `cell`, or with a fresh one when an outer call on this thread already
/// holds it (rayon may run another task on a thread that waits inside a product).
pub(crate) fn with_scratch<R>(cell: &'static Scratch, f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    cell.with(|c| match c.try_borrow_mut() {
        Ok(mut v) => f(&mut v),
        Err(_) => f(&mut Vec::new()),
    })
}

/// `buf[..len]`, growing `buf` (with zeros) when it is shorter; what it held before is left in place.
pub(crate) fn grown(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}
