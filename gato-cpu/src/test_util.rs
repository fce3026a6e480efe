//! Helpers shared by the CPU kernels' unit tests: deterministic operands, the f64 product reference, and a rerun
//! with the narrower kernels forced.

/// `n` values in [-1, 1], a deterministic hash of the index and `seed`.
pub(crate) fn vals(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2001) as f32 / 1000.0
                - 1.0
        })
        .collect()
}

/// `alpha · x · w + bias` in f64 (`x`: `[m, k]`, `w`: `[k, n]`, both given wide).
pub(crate) fn reference(
    x: &[f64],
    w: &[f64],
    (m, k, n): (usize, usize, usize),
    alpha: f32,
    bias: Option<&[f32]>,
) -> Vec<f64> {
    let mut y = vec![0.0f64; m * n];
    for r in 0..m {
        for c in 0..n {
            let s: f64 = (0..k).map(|i| x[r * k + i] * w[i * n + c]).sum();
            y[r * n + c] = alpha as f64 * s + bias.map_or(0.0, |b| b[c] as f64);
        }
    }
    y
}

/// Run `check` with the default kernels, then — on an AVX-512 machine — again with the AVX2 kernels forced (no
/// AVX-512 and no bf16 product kernel), each run labelled for its failure messages.
pub(crate) fn on_both_kernel_widths(
    default: &str,
    forced: &str,
    check: impl Fn(&str) + std::panic::RefUnwindSafe,
) {
    check(default);
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        crate::matmul::small_m::force_avx2(true);
        let r = std::panic::catch_unwind(|| check(forced));
        crate::matmul::small_m::force_avx2(false);
        if let Err(e) = r {
            std::panic::resume_unwind(e);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = forced;
}
