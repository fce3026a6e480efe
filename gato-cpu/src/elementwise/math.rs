//! Vectorisable f32 math for the hot elementwise loops: `exp` for the attention softmax and the exact-erf GELU.
//!
//! `libm`'s `expf`/`erff` are scalar calls, so a loop over them cannot use SIMD; these versions are branch-free
//! arithmetic that LLVM vectorises, and the loops that use them are compiled per CPU level with `multiversion`
//! (AVX-512, AVX2+FMA, NEON, or plain) and dispatched at run time.
//!
//! Accuracy (tested against f64 in this file): `exp` ≤ 2 ulp on `[−87, 88]`; `gelu` relative error ≤ 2e-6 on
//! `[−3, 3]` and ≤ 5e-7·(1 + x²) in the tails (where gelu's own condition number is ≈ x²).

use multiversion::multiversion;

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so `x − n·ln2` is exact for |n| ≤ 128 (Cody–Waite).
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;

/// `eˣ` for `x ≤ 88.3` (larger inputs saturate at `e^88.3`); `x < −87.3` gives 0 (the true value is below
/// 1.2e-38, a subnormal). NaN stays NaN.
///
/// `eˣ = 2ⁿ · eʳ` with `n = round(x·log₂e)`, `r = x − n·ln2 ∈ [−ln2/2, ln2/2]`, `eʳ` by its Taylor series to `r⁷`
/// (truncation error `|r|⁸/8! < 6e-9`). Branch-free, so loops over it vectorise.
#[inline(always)]
pub(crate) fn exp(x_in: f32) -> f32 {
    // Adding 1.5·2²³ rounds to an integer held in the low mantissa bits: `n` as a float and, from the bits, as
    // an integer, without a float-to-int `as` (saturating in Rust, which LLVM cannot vectorise).
    const MAGIC: f32 = 12_582_912.0;
    let x = x_in.clamp(-87.3, 88.3);
    let t = x.mul_add(LOG2_E, MAGIC);
    let n = t - MAGIC;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let p = r.mul_add(1.0 / 5040.0, 1.0 / 720.0);
    let p = p.mul_add(r, 1.0 / 120.0);
    let p = p.mul_add(r, 1.0 / 24.0);
    let p = p.mul_add(r, 1.0 / 6.0);
    let p = p.mul_add(r, 0.5);
    let p = p.mul_add(r, 1.0);
    let p = p.mul_add(r, 1.0);
    // n ∈ [−126, 127] after the clamp, so n + 127 ∈ [1, 254] is a normal exponent and 2ⁿ is exact.
    let scale = t.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127) << 23;
    let y = p * f32::from_bits(scale);
    if x_in < -87.3 {
        0.0
    } else {
        y
    }
}

/// `erfc(z)` for `z ≥ 0` (Numerical Recipes' Chebyshev fit, fractional error < 1.2e-7 everywhere).
/// The coefficients are the published ones, kept as printed (f32 rounds them).
#[allow(clippy::excessive_precision)]
#[inline(always)]
fn erfc_nonneg(z: f32) -> f32 {
    let t = 1.0 / 0.5f32.mul_add(z, 1.0);
    let p = t.mul_add(0.170_872_77, -0.822_152_23);
    let p = p.mul_add(t, 1.488_515_87);
    let p = p.mul_add(t, -1.135_203_98);
    let p = p.mul_add(t, 0.278_868_07);
    let p = p.mul_add(t, -0.186_288_06);
    let p = p.mul_add(t, 0.096_784_18);
    let p = p.mul_add(t, 0.374_091_96);
    let p = p.mul_add(t, 1.000_023_68);
    let p = p.mul_add(t, -1.265_512_23);
    t * exp(p - z * z)
}

/// Exact GELU `x·Φ(x) = x/2 · erfc(−x/√2)` (design.md §6). Written with `erfc` so the negative tail keeps its relative
/// accuracy (`1 + erf` would cancel).
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    let z = x * std::f32::consts::FRAC_1_SQRT_2;
    let e = erfc_nonneg(z.abs());
    let phi2 = if z >= 0.0 { 2.0 - e } else { e };
    0.5 * x * phi2
}

/// `x ← gelu(x)` over a slice.
#[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn gelu_in_place(x: &mut [f32]) {
    for v in x {
        *v = gelu(*v);
    }
}

/// `gelu(a) · b` elementwise into `out` (GEGLU).
#[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn gelu_mul(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, &g), &l) in out.iter_mut().zip(a).zip(b) {
        *o = gelu(g) * l;
    }
}

/// Largest element (NaN-ignoring like `f32::max`); `−∞` for an empty slice.
#[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn max(x: &[f32]) -> f32 {
    // Eight independent lanes so the reduction vectorises.
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = acc[i].max(c[i]);
        }
    }
    tail.iter().fold(
        acc.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        |m, &v| m.max(v),
    )
}

/// `x ← exp(x − shift)`; returns the sum of the new values.
#[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn exp_shifted_sum(x: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        for i in 0..8 {
            c[i] = exp(c[i] - shift);
            acc[i] += c[i];
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for v in chunks.into_remainder() {
        *v = exp(*v - shift);
        sum += *v;
    }
    sum
}

/// `Σ aᵢ bᵢ` with eight independent lanes (vectorised).
#[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y ← y + a · x`.
#[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = a.mul_add(x, *y);
    }
}

/// `x ← x · s`.
#[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma", "aarch64+neon"))]
pub(crate) fn scale(x: &mut [f32], s: f32) {
    for v in x {
        *v *= s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f64) -> f64 {
        let b32 = b as f32;
        let ulp = (f32::from_bits(b32.abs().to_bits() + 1) - b32.abs()) as f64;
        (a as f64 - b).abs() / ulp
    }

    #[test]
    fn exp_within_two_ulp_of_f64() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            worst = worst.max(ulps(exp(x), (x as f64).exp()));
            x += 0.000_731;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(-1000.0), 0.0);
    }

    #[test]
    fn gelu_matches_f64_erfc() {
        // f64 reference: x·Φ(x) with Φ from libm's double erfc. In the negative tail gelu's condition number is
        // ≈ x², so rounding `x/√2` to f32 alone costs ≈ 6e-8·x² relative; the bound scales with it.
        let (mut worst, mut worst_near) = (0.0f64, 0.0f64);
        let mut x = -14.0f32;
        while x <= 14.0 {
            let want = x as f64 * 0.5 * libm::erfc(-(x as f64) / std::f64::consts::SQRT_2);
            if want.abs() >= 1e-30 {
                let rel = (gelu(x) as f64 - want).abs() / want.abs();
                worst = worst.max(rel / (1.0 + (x as f64).powi(2)));
                if x.abs() <= 3.0 {
                    worst_near = worst_near.max(rel);
                }
            }
            x += 0.000_37;
        }
        eprintln!("gelu: worst relative error on [-3, 3] {worst_near:.2e}; worst error / (1 + x²) {worst:.2e}");
        assert!(
            worst_near <= 2e-6,
            "worst relative error on [-3, 3]: {worst_near}"
        );
        assert!(worst <= 5e-7, "worst relative error / (1 + x²): {worst}");
        assert_eq!(gelu(0.0), 0.0);
        assert!(gelu(f32::NAN).is_nan());
        assert_eq!(gelu(100.0), 100.0);
        assert_eq!(gelu(-100.0), 0.0);
    }

    #[test]
    fn softmax_helpers_match_scalar() {
        let v: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 101) as f32 * 0.13 - 6.0)
            .collect();
        let m = max(&v);
        assert_eq!(m, v.iter().copied().fold(f32::NEG_INFINITY, f32::max));
        let mut e = v.clone();
        let sum = exp_shifted_sum(&mut e, m);
        let want: f64 = v.iter().map(|&x| ((x - m) as f64).exp()).sum();
        assert!((sum as f64 - want).abs() / want < 1e-6);
        scale(&mut e, 1.0 / sum);
        assert!((e.iter().map(|&x| x as f64).sum::<f64>() - 1.0).abs() < 1e-6);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
    }
}
