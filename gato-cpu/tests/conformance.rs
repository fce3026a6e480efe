//! The CPU backend against the f64 reference: every op, random shapes (proptest), and the error contract.

use std::sync::Arc;

use gato_core::testing::Availability;
use gato_cpu::CpuBackend;

fn make() -> Availability {
    // Two threads so the parallel code paths run even on one core.
    Availability::Available(Arc::new(
        CpuBackend::new(Some(2)).expect("CPU backend must always be available"),
    ))
}

mod conformance {
    gato_core::backend_conformance_tests!(super::make);
}

mod backward_conformance {
    gato_core::backend_backward_conformance_tests!(super::make);
}

fn make_single_thread() -> Availability {
    Availability::Available(Arc::new(
        CpuBackend::new(Some(1)).expect("CPU backend must always be available"),
    ))
}

mod conformance_single_thread {
    gato_core::backend_conformance_tests!(super::make_single_thread);
}

/// The CPU backend's own layouts: a weight laid out for bf16 products holds the row-pair strips exactly where it
/// should (a bf16 weight, AVX512_BF16), and a weight with no input rows (`K = 0`) lays out and gives the bias.
mod laid_out {
    use gato_core::prelude::*;
    use gato_core::{DType, HostSlice, MatmulPrecision, Shape, UnaryOp};
    use gato_cpu::{bf16_products_available, CpuBackend, CpuPackedWeight};

    #[test]
    fn bf16_products_are_used_only_for_bf16_weights_where_the_cpu_has_them() {
        let be = CpuBackend::new(Some(2)).unwrap();
        let w = be
            .upload(HostSlice::F32(&[0.5; 6 * 20]), &Shape::from([6, 20]))
            .unwrap();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            for precision in [MatmulPrecision::F32, MatmulPrecision::Bf16] {
                let packed = be
                    .pack_weight(&be.cast(&w, dtype).unwrap(), precision)
                    .unwrap()
                    .expect("the CPU backend lays weights out");
                let layout = packed.storage().as_any().downcast_ref::<CpuPackedWeight>();
                let want = if dtype == DType::BF16
                    && precision == MatmulPrecision::Bf16
                    && bf16_products_available()
                {
                    MatmulPrecision::Bf16
                } else {
                    MatmulPrecision::F32
                };
                assert_eq!(
                    layout.map(|l| l.precision()),
                    Some(want),
                    "{dtype}, {precision}"
                );
            }
        }
    }

    #[test]
    fn a_weight_with_no_input_rows_gives_the_bias() {
        let be = CpuBackend::new(Some(2)).unwrap();
        let bias: Vec<f32> = (0..20).map(|i| i as f32 / 10.0 - 1.0).collect();
        let b = be
            .upload(HostSlice::F32(&bias), &Shape::from([20]))
            .unwrap();
        let x = be.zeros(&Shape::from([3, 0]), DType::F32).unwrap();
        let w = be.zeros(&Shape::from([0, 20]), DType::F32).unwrap();
        for dtype in [DType::F32, DType::BF16] {
            for precision in [MatmulPrecision::F32, MatmulPrecision::Bf16] {
                let packed = be
                    .pack_weight(&be.cast(&w, dtype).unwrap(), precision)
                    .unwrap()
                    .unwrap();
                let y = be.linear(&x, &packed, Some(&b)).unwrap();
                let got = be.download(&y).unwrap().into_f32().unwrap();
                assert_eq!(got, bias.repeat(3), "{dtype}, {precision}");
                let g = be.linear_act(&x, &packed, Some(&b), UnaryOp::Gelu).unwrap();
                let want = be.download(&be.unary(UnaryOp::Gelu, &y).unwrap()).unwrap();
                assert_eq!(
                    be.download(&g).unwrap().into_f32(),
                    want.into_f32(),
                    "{dtype}, {precision}"
                );
            }
        }
    }
}
