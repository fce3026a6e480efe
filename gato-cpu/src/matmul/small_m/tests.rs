//! Every row count and weight type of the few-row products against an f64 reference, on both kernel widths.

use super::*;

use crate::test_util::{on_both_kernel_widths, reference, vals};

#[test]
fn every_row_count_and_weight_type_matches_f64() {
    // On an AVX-512 machine, the AVX2 kernels too (CI's machines have AVX-512).
    on_both_kernel_widths("default kernels", "AVX2 kernels", check_all_shapes);
}

fn check_all_shapes(kernels: &str) {
    // Column counts hit the paired, single and partial strips; rows hit every tile height (1–12 and 1–6 rows,
    // balanced blocks).
    for &(m, k, n) in &[
        (1, 37, 200),
        (2, 64, 48),
        (3, 5, 17),
        (3, 0, 17),
        (7, 33, 144),
        (13, 70, 130),
        (64, 16, 272),
        (200, 48, 80),
        (40, 96, 208),
        (23, 31, 96),
        (300, 20, 70),
    ] {
        let x = vals(m * k, 1);
        let w32 = vals(k * n, 2);
        let bias = vals(n, 3);
        let w16: Vec<f16> = w32.iter().map(|&v| f16::from_f32(v)).collect();
        let wb16: Vec<bf16> = w32.iter().map(|&v| bf16::from_f32(v)).collect();
        for (name, w, wide) in [
            (
                "f32",
                Weights::F32(&w32),
                w32.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            ),
            (
                "f16",
                Weights::F16(&w16),
                w16.iter().map(|v| v.to_f64()).collect(),
            ),
            (
                "bf16",
                Weights::BF16(&wb16),
                wb16.iter().map(|v| v.to_f64()).collect(),
            ),
        ] {
            for (alpha, b, act) in [
                (1.0, None, None),
                (0.5, Some(bias.as_slice()), None),
                (1.0, Some(bias.as_slice()), Some(UnaryOp::Gelu)),
            ] {
                let mut out = vec![f32::NAN; m * n];
                matmul(&mut out, &x, w, m, k, n, alpha, b, act);
                // The same product from strips laid out ahead of time (f16/bf16 kept narrow).
                let (strips, skew) = pack_strips(w, k, n);
                let len = strips_len(k, n);
                let strips = &strips[skew..skew + len];
                let narrow16: Vec<f16> = strips.iter().map(|&v| f16::from_f32(v)).collect();
                let narrowb: Vec<bf16> = strips.iter().map(|&v| bf16::from_f32(v)).collect();
                let view = match w {
                    Weights::F32(_) => PackedView::F32(strips),
                    Weights::F16(_) => PackedView::F16(&narrow16),
                    Weights::BF16(_) => PackedView::BF16(&narrowb),
                };
                let mut from_strips = vec![f32::NAN; m * n];
                matmul_packed(&mut from_strips, &x, view, m, k, n, alpha, b, act);
                if STREAM_ROWS < m && m <= MAX_ROWS {
                    // Same tiles, same order: the same bits (one row streams instead).
                    assert_eq!(
                        out, from_strips,
                        "{kernels}, {name} m={m} k={k} n={n}: packed"
                    );
                }
                let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let mut want = reference(&x64, &wide, (m, k, n), alpha, b);
                if act.is_some() {
                    // x·Φ(x), Φ from f64 erfc.
                    want.iter_mut()
                        .for_each(|v| *v *= 0.5 * libm::erfc(-*v / std::f64::consts::SQRT_2));
                }
                let err = out
                    .iter()
                    .chain(&from_strips)
                    .zip(want.iter().chain(&want))
                    .map(|(&g, &r)| (g as f64 - r).abs())
                    .fold(0.0, f64::max);
                assert!(
                    err <= 1e-5 * (k + 1) as f64,
                    "{kernels}, {name} m={m} k={k} n={n} alpha={alpha}: error {err}"
                );
            }
        }
    }
}
