//! The CPU backend against the f64 reference: every op, random shapes (proptest), and the error contract.

use std::sync::Arc;

use gato_core::cpu::CpuBackend;
use gato_core::testing::Availability;

fn make() -> Availability {
    // Two threads so the parallel code paths run even on one core.
    Availability::Available(Arc::new(
        CpuBackend::new(Some(2)).expect("CPU backend must always be available"),
    ))
}

mod conformance {
    gato_core::backend_conformance_tests!(super::make);
}

fn make_single_thread() -> Availability {
    Availability::Available(Arc::new(
        CpuBackend::new(Some(1)).expect("CPU backend must always be available"),
    ))
}

mod conformance_single_thread {
    gato_core::backend_conformance_tests!(super::make_single_thread);
}
