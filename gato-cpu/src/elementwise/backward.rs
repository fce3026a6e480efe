//! Backward kernels of the elementwise family (design.md §8): `dy · f'(x)`, GEGLU's two halves, and the row sum
//! that is a broadcast bias's gradient. Sums accumulate in f64.

use rayon::prelude::*;

use super::kernels::CHUNK;
use gato_core::backend::UnaryOp;

/// `d/dx [x·Φ(x)] = Φ(x) + x·φ(x)`, exact GELU's derivative.
pub(crate) fn gelu_grad(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2));
    let pdf = (-0.5 * x * x).exp()
        * (0.5 * std::f32::consts::FRAC_2_SQRT_PI * std::f32::consts::FRAC_1_SQRT_2);
    cdf + x * pdf
}

/// `out = dy · f'(x)`.
pub(crate) fn unary_backward(op: UnaryOp, x: &[f32], dy: &[f32], out: &mut [f32]) {
    let d = |x: f32| match op {
        UnaryOp::Gelu => gelu_grad(x),
        UnaryOp::Relu => f32::from(u8::from(x > 0.0)),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Tanh => 1.0 - x.tanh() * x.tanh(),
        UnaryOp::Neg => -1.0,
    };
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(o, (x, g))| {
            for ((o, &x), &g) in o.iter_mut().zip(x).zip(g) {
                *o = g * d(x);
            }
        });
}

/// GEGLU backward over rows of `x: [2f]`, `dy: [f]`: `da = dy·b·gelu'(a)`, `db = dy·gelu(a)`.
pub(crate) fn geglu_backward(x: &[f32], f: usize, dy: &[f32], out: &mut [f32]) {
    if f == 0 {
        return;
    }
    out.par_chunks_mut(2 * f)
        .zip(x.par_chunks(2 * f).zip(dy.par_chunks(f)))
        .for_each(|(o, (x, g))| {
            for i in 0..f {
                let (a, b) = (x[i], x[f + i]);
                o[i] = g[i] * b * gelu_grad(a);
                o[f + i] = g[i] * super::math::gelu(a);
            }
        });
}

/// Column sums of `x: [rows, d]` into `out: [d]`, accumulated in f64; columns in parallel blocks.
pub(crate) fn sum_rows(x: &[f32], d: usize, out: &mut [f32]) {
    const COLS: usize = 64;
    if d == 0 {
        return;
    }
    let rows = x.len() / d;
    out.par_chunks_mut(COLS).enumerate().for_each(|(b, o)| {
        let c0 = b * COLS;
        let mut acc = [0f64; COLS];
        for r in 0..rows {
            let row = &x[r * d + c0..r * d + c0 + o.len()];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v as f64;
            }
        }
        for (o, a) in o.iter_mut().zip(acc) {
            *o = a as f32;
        }
    });
}
