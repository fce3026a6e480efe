//! CPU backend op throughput. `cargo bench -p gato-cpu --bench ops`.
//!
//! The GEMM shape is the `small` preset's first FF matrix on 1024 tokens, (1024×768)·(768×3072): 4.83 GFLOP. The
//! acting shapes run the same matrix on 1 row (a decoded token: bytes of weights read) and 40 rows (an observation:
//! FLOP), with f32 and bf16 weights, and bf16 weights laid out by `Backend::pack_weight` as acting holds them (for
//! f32 and for bf16 products — `vdpbf16ps` where the CPU has AVX512_BF16); 24
//! distinct matrices (72 MB in f32) cycle so the weights come from memory, as in a real decode, not from the
//! last-level cache.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gato_core::prelude::*;
use gato_core::{AttentionSpec, HostSlice, MatmulPrecision, MatmulSpec, Shape};
use gato_cpu::CpuBackend;

fn data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect()
}

fn bench(c: &mut Criterion) {
    let be = CpuBackend::new(None).expect("cpu backend");
    let (m, k, n) = (1024, 768, 3072);
    let a = be
        .upload(HostSlice::F32(&data(m * k)), &Shape::from([m, k]))
        .unwrap();
    let b = be
        .upload(HostSlice::F32(&data(k * n)), &Shape::from([k, n]))
        .unwrap();
    let mut g = c.benchmark_group("cpu");
    g.sample_size(10);
    g.throughput(Throughput::Elements((2 * m * k * n) as u64));
    g.bench_function("matmul 1024x768x3072 (elements = FLOP)", |bch| {
        bch.iter(|| be.matmul(&a, &b, &MatmulSpec::default()).unwrap())
    });
    let (bs, h, t, d) = (1, 24, 1024, 32);
    let q = be
        .upload(
            HostSlice::F32(&data(bs * h * t * d)),
            &Shape::from([bs, h, t, d]),
        )
        .unwrap();
    let spec = AttentionSpec {
        scale: 1.0 / (d as f32).sqrt(),
        causal: true,
        ..Default::default()
    };
    // Causal attention FLOP: QKᵀ and PV over the lower triangle, 2·2·h·(t²/2)·d.
    g.throughput(Throughput::Elements((2 * h * t * t * d) as u64));
    g.bench_function(
        "causal attention 24 heads x 1024 x 32 (elements = FLOP)",
        |bch| bch.iter(|| be.attention(&q, &q, &q, &spec).unwrap()),
    );
    // An observation pushed while acting: 40 queries against the 484 cached keys and their own.
    let (tq, tk) = (40, 524);
    let qo = be
        .upload(
            HostSlice::F32(&data(h * tq * d)),
            &Shape::from([1, h, tq, d]),
        )
        .unwrap();
    let kv = be
        .upload(
            HostSlice::F32(&data(h * tk * d)),
            &Shape::from([1, h, tk, d]),
        )
        .unwrap();
    let obs_spec = AttentionSpec {
        q_offset: tk - tq,
        ..spec.clone()
    };
    g.throughput(Throughput::Elements((2 * 2 * h * tq * tk * d) as u64));
    g.bench_function(
        "observation attention 24 heads x 40 queries x 524 keys x 32 (elements = FLOP)",
        |bch| bch.iter(|| be.attention(&qo, &kv, &kv, &obs_spec).unwrap()),
    );
    let x = be
        .upload(HostSlice::F32(&data(1024 * 768)), &Shape::from([1024, 768]))
        .unwrap();
    let gamma = be
        .upload(HostSlice::F32(&vec![1.0; 768]), &Shape::from([768]))
        .unwrap();
    let beta = be
        .zeros(&Shape::from([768]), gato_core::DType::F32)
        .unwrap();
    g.throughput(Throughput::Bytes((2 * 1024 * 768 * 4) as u64));
    g.bench_function("layer_norm 1024x768 (bytes read+written)", |bch| {
        bch.iter(|| be.layer_norm(&x, &gamma, &beta, 1e-5).unwrap())
    });
    // Acting shapes: small-M products against 24 weight matrices in turn.
    let ws: Vec<_> = (0..24)
        .map(|i| {
            let w = be
                .upload(HostSlice::F32(&data(k * n + i)[i..]), &Shape::from([k, n]))
                .unwrap();
            let w16 = be.cast(&w, gato_core::DType::BF16).unwrap();
            let lay_out = |precision| {
                be.pack_weight(&w16, precision)
                    .unwrap()
                    .expect("the CPU backend lays weights out")
            };
            let laid_out = lay_out(MatmulPrecision::F32);
            let bf16_products = lay_out(MatmulPrecision::Bf16);
            [w, w16, laid_out, bf16_products]
        })
        .collect();
    for rows in [1usize, 40] {
        let x = be
            .upload(HostSlice::F32(&data(rows * k)), &Shape::from([rows, k]))
            .unwrap();
        for (name, which) in [
            ("f32", 0),
            ("bf16", 1),
            ("bf16 laid out", 2),
            ("bf16 laid out, bf16 products", 3),
        ] {
            let bf16 = which > 0;
            let mut i = 0;
            let weight_bytes = k * n * if bf16 { 2 } else { 4 };
            if rows == 1 {
                g.throughput(Throughput::Bytes(weight_bytes as u64));
            } else {
                g.throughput(Throughput::Elements((2 * rows * k * n) as u64));
            }
            let unit = if rows == 1 {
                "bytes of weights"
            } else {
                "elements = FLOP"
            };
            g.bench_function(
                format!("linear {rows}x768 · {name} 768x3072 ({unit})"),
                |bch| {
                    bch.iter(|| {
                        let w = &ws[i % ws.len()][which];
                        i += 1;
                        be.linear(&x, w, None).unwrap()
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
