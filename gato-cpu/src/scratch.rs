//! Per-thread scratch vectors for the kernels, kept between calls so a warm acting loop allocates nothing
//! (issue 7): one-row partial sums, widened weight rows, packed panels, attention scores.

use std::cell::RefCell;
use std::thread::LocalKey;

/// A thread-local scratch vector (of f32 unless said otherwise).
pub(crate) type Scratch<T = f32> = LocalKey<RefCell<Vec<T>>>;

/// Run `f` with this thread's vector in `cell`, or with a fresh one when an outer call on this thread already
/// holds it (rayon may run another task on a thread that waits inside a product).
pub(crate) fn with_scratch<T, R>(cell: &'static Scratch<T>, f: impl FnOnce(&mut Vec<T>) -> R) -> R {
    cell.with(|c| match c.try_borrow_mut() {
        Ok(mut v) => f(&mut v),
        Err(_) => f(&mut Vec::new()),
    })
}

/// `buf[..len]`, growing `buf` (with zeros) when it is shorter; what it held before is left in place.
pub(crate) fn grown<T: Default + Clone>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::default());
    }
    &mut buf[..len]
}
