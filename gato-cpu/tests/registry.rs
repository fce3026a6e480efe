//! The registry finds the CPU backend, rejects unknown names with the list of valid ones, and builds backends.

// Link the crate so its registry entry exists in this test binary.
use gato_core::{backend_entry, backends, create_backend, BackendOptions, Error};
use gato_cpu as _;

#[test]
fn cpu_is_registered_and_available() {
    let names: Vec<_> = backends().iter().map(|e| e.name).collect();
    assert!(names.contains(&"cpu"), "registered: {names:?}");
    let entry = backend_entry("cpu").unwrap();
    assert!((entry.probe)().is_ok());
    let b = create_backend(
        "cpu",
        &BackendOptions {
            threads: Some(1),
            device: 0,
        },
    )
    .unwrap();
    assert_eq!(b.name(), "cpu");
    assert!(
        b.device_description().starts_with("1 threads"),
        "{}",
        b.device_description()
    );
}

#[test]
fn unknown_backend_lists_registered_names() {
    let err = create_backend("tpu", &BackendOptions::default()).unwrap_err();
    assert!(matches!(err, Error::UnknownPlugin { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("unknown backend `tpu`") && msg.contains("cpu"),
        "{msg}"
    );
}

#[test]
fn zero_threads_is_an_error_not_a_panic() {
    let msg = create_backend(
        "cpu",
        &BackendOptions {
            threads: Some(0),
            device: 0,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("threads") && msg.contains("0"), "{msg}");
}

/// A thread count past four per core is refused at once, naming the value and the range, before any thread
/// starts (100 000 threads once kept two cores busy for over a minute); the largest allowed count works.
#[test]
fn too_many_threads_is_an_error_naming_the_range() {
    let max = gato_cpu::max_threads();
    let start = std::time::Instant::now();
    let msg = create_backend(
        "cpu",
        &BackendOptions {
            threads: Some(100_000),
            device: 0,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("threads = 100000") && msg.contains(&format!("allowed 1 to {max}")),
        "{msg}"
    );
    assert!(
        start.elapsed().as_secs() < 5,
        "refusing took {:?}",
        start.elapsed()
    );
    let ok = create_backend(
        "cpu",
        &BackendOptions {
            threads: Some(max),
            device: 0,
        },
    );
    assert!(ok.is_ok(), "{max} threads: {ok:?}");
}

#[test]
fn results_do_not_depend_on_thread_count() {
    use gato_core::{HostSlice, MatmulSpec, Shape};
    let a: Vec<f32> = (0..256 * 300)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
        .collect();
    let b: Vec<f32> = (0..300 * 200)
        .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
        .collect();
    let run = |threads| {
        let be = create_backend(
            "cpu",
            &BackendOptions {
                threads: Some(threads),
                device: 0,
            },
        )
        .unwrap();
        let x = be
            .upload(HostSlice::F32(&a), &Shape::from([256, 300]))
            .unwrap();
        let y = be
            .upload(HostSlice::F32(&b), &Shape::from([300, 200]))
            .unwrap();
        be.download(&be.matmul(&x, &y, &MatmulSpec::default()).unwrap())
            .unwrap()
            .into_f32()
            .unwrap()
    };
    let (one, two) = (run(1), run(2));
    let max_diff = one
        .iter()
        .zip(&two)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max_diff <= 1e-4,
        "max difference between 1 and 2 threads: {max_diff}"
    );
}
