//! The shared backend conformance suite, unchanged, against the CUDA backend. Without a usable GPU each test
//! prints that it skipped and why.

use gato_core::testing::Availability;
// Link the crate so its registry entry exists in this test binary.
use gato_cuda as _;

fn make() -> Availability {
    match gato_core::create_backend("cuda", &gato_core::BackendOptions::default()) {
        Ok(b) => Availability::Available(b),
        Err(e) => Availability::Skip(e.to_string()),
    }
}

mod conformance {
    gato_core::backend_conformance_tests!(super::make);
}

mod backward {
    gato_core::backend_backward_conformance_tests!(super::make);
}

#[test]
fn cuda_is_registered() {
    let names: Vec<_> = gato_core::backends().iter().map(|e| e.name).collect();
    assert!(names.contains(&"cuda"), "registered: {names:?}");
}

#[test]
fn unavailable_cuda_is_a_clear_error() {
    match gato_core::create_backend("cuda", &gato_core::BackendOptions::default()) {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("CUDA backend unavailable: "), "{msg}");
        }
        Ok(b) => println!("CUDA backend available: {}", b.device_description()),
    }
}
