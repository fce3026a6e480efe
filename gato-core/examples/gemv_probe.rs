//! Times matrix-vector products through the CPU backend (decode-shaped GEMM). `cargo run --release -p gato-core --example gemv_probe`
use gato_core::cpu::CpuBackend;
use gato_core::{Backend, HostSlice, MatmulSpec, Shape};
use std::time::Instant;
fn main() {
    let be = CpuBackend::new(None).unwrap();
    for (m, n, k, tb) in [
        (1, 33025, 768, true),
        (1, 3072, 768, false),
        (1, 768, 3072, false),
        (40, 3072, 768, false),
        (1, 1024, 768, true),
    ] {
        let a = be
            .upload(HostSlice::F32(&vec![0.5; m * k]), &Shape::from([m, k]))
            .unwrap();
        let bshape = if tb { [n, k] } else { [k, n] };
        let b = be
            .upload(HostSlice::F32(&vec![0.25; n * k]), &Shape::from(bshape))
            .unwrap();
        let spec = MatmulSpec {
            trans_b: tb,
            ..Default::default()
        };
        be.matmul(&a, &b, &spec).unwrap();
        let t = Instant::now();
        for _ in 0..10 {
            be.matmul(&a, &b, &spec).unwrap();
        }
        let s = t.elapsed().as_secs_f64() / 10.0;
        println!(
            "m={m} n={n} k={k} trans_b={tb}: {:.2} ms, {:.1} GFLOP/s, {:.1} GB/s of B",
            s * 1e3,
            2.0 * (m * n * k) as f64 / s / 1e9,
            (n * k * 4) as f64 / s / 1e9
        );
    }
}
