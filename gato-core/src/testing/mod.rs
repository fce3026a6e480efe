//! The backend conformance suite: every op of a backend against the naive f64 [`reference`](mod@crate::reference) on random shapes and
//! values (proptest), plus the error contract (bad shapes, dtypes, ids and foreign tensors return `Err`, never
//! panic). A backend crate runs the whole suite with one macro:
//!
//! ```ignore
//! fn make() -> gato_core::testing::Availability { /* Available(backend) or Skip(reason) */ }
//! mod conformance { gato_core::backend_conformance_tests!(super::make); }
//! ```
//!
//! A backend that cannot run here (no GPU) returns `Skip(reason)`: each test then prints that it skipped and why.

pub mod conformance;

pub use crate::reference;

use std::sync::Arc;

use crate::backend::Backend;

/// Whether the backend under test can run on this machine.
pub enum Availability {
    /// Run the checks against this backend.
    Available(Arc<dyn Backend>),
    /// Skip, printing the reason.
    Skip(String),
}

/// Run one conformance check, or print why it was skipped. Panics (failing the test) with the check's message.
pub fn run_check(
    op: &str,
    make: fn() -> Availability,
    check: fn(&dyn Backend) -> Result<(), String>,
) {
    match make() {
        Availability::Skip(reason) => {
            // Written to the process's stderr directly, past the test harness's capture, so the skip and its
            // reason show in every `cargo test` log.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED conformance::{op}: {reason}");
        }
        Availability::Available(b) => {
            if let Err(msg) = check(b.as_ref()) {
                panic!("conformance::{op} failed on backend `{}`: {msg}", b.name());
            }
        }
    }
}

/// Expand to one `#[test]` per check of the training ops' backward passes (design.md §8), each against the
/// backend `$make()` returns. Separate from [`crate::backend_conformance_tests!`] so a backend adds it once it implements
/// them (the CUDA backend's are the GPU-training issue's).
#[macro_export]
macro_rules! backend_backward_conformance_tests {
    ($make:path) => {
        $crate::backend_conformance_tests!(@each $make;
            unary_backward, geglu_backward_and_sum_rows, layer_norm_backward, group_norm_backward, embedding_backward,
            conv2d_backward, cross_entropy, attention_backward, optimizer, optimizer_clipped, backward_errors);
    };
}

/// Expand to one `#[test]` per conformance check, each running against the backend `$make()` returns.
#[macro_export]
macro_rules! backend_conformance_tests {
    ($make:path) => {
        $crate::backend_conformance_tests!(@each $make;
            memory, cast, matmul, matmul_few_rows, linear, linear_act, linear_half_weights, pack_weight, unary, binary, affine, geglu, layer_norm,
            group_norm, group_norm_accuracy, softmax, log_softmax, attention, attention_long, attention_wide_heads, embedding, conv2d, concat, slice,
            slice_assign, permute, errors);
    };
    (@each $make:path; $($op:ident),* $(,)?) => {
        $(
            #[test]
            fn $op() {
                $crate::testing::run_check(stringify!($op), $make, $crate::testing::conformance::$op);
            }
        )*
    };
}

/// A small deterministic generator (SplitMix64) for test data, so a proptest case is reproducible from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    /// Uniform integer in `[0, n)`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// `n` values uniform in `[lo, hi)`.
    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}
