//! LayerNorm's training forward (the statistics it saves) and backward (design.md §8). Row sums accumulate in
//! f64; the statistics are the forward's own, so `y` is bit-identical to [`super::kernels::layer_norm`]'s.

use rayon::prelude::*;

use super::kernels::mean_var;

/// Per row of `x: [rows, d]`: the mean and `1/√(var + eps)`, as the forward computes them.
pub(crate) fn layer_norm_stats(x: &[f32], d: usize, eps: f32) -> Vec<(f32, f32)> {
    if d == 0 {
        return Vec::new();
    }
    x.par_chunks(d)
        .map(|row| {
            let (mean, var) = mean_var(row);
            (mean, 1.0 / (var + eps).sqrt())
        })
        .collect()
}

/// `dx` of LayerNorm per row: `rstd · (g − mean(g) − x̂·mean(g·x̂))` with `g = dy·γ`, `x̂ = (x − mean)·rstd`.
pub(crate) fn layer_norm_dx(
    x: &[f32],
    dy: &[f32],
    d: usize,
    gamma: &[f32],
    stats: &[(f32, f32)],
    out: &mut [f32],
) {
    if d == 0 {
        return;
    }
    out.par_chunks_mut(d)
        .zip(x.par_chunks(d).zip(dy.par_chunks(d)))
        .zip(stats.par_iter())
        .for_each(|((o, (row, g)), &(mean, rstd))| {
            let (mut m1, mut m2) = (0f64, 0f64);
            for ((&v, &g), &w) in row.iter().zip(g).zip(gamma) {
                let gg = (g * w) as f64;
                m1 += gg;
                m2 += gg * ((v - mean) * rstd) as f64;
            }
            let (m1, m2) = ((m1 / d as f64) as f32, (m2 / d as f64) as f32);
            for (((o, &v), &g), &w) in o.iter_mut().zip(row).zip(g).zip(gamma) {
                let xhat = (v - mean) * rstd;
                *o = rstd * (g * w - m1 - xhat * m2);
            }
        });
}

/// `dγ = Σ dy·x̂` and `dβ = Σ dy` over rows, in f64, columns in parallel blocks.
pub(crate) fn layer_norm_dparams(
    x: &[f32],
    dy: &[f32],
    d: usize,
    stats: &[(f32, f32)],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    const COLS: usize = 64;
    if d == 0 {
        return;
    }
    dgamma
        .par_chunks_mut(COLS)
        .zip(dbeta.par_chunks_mut(COLS))
        .enumerate()
        .for_each(|(b, (dg, db))| {
            let c0 = b * COLS;
            let (mut ag, mut ab) = ([0f64; COLS], [0f64; COLS]);
            for (r, &(mean, rstd)) in stats.iter().enumerate() {
                let (row, g) = (
                    &x[r * d + c0..r * d + c0 + dg.len()],
                    &dy[r * d + c0..r * d + c0 + dg.len()],
                );
                for (i, (&v, &g)) in row.iter().zip(g).enumerate() {
                    ag[i] += (g * (v - mean) * rstd) as f64;
                    ab[i] += g as f64;
                }
            }
            for (i, (g, b)) in dg.iter_mut().zip(db.iter_mut()).enumerate() {
                *g = ag[i] as f32;
                *b = ab[i] as f32;
            }
        });
}

/// Per (image, group) of `x` (groups contiguous, `len` values each): the mean and `1/√(var + eps)`, from the
/// forward's pairwise sums.
pub(crate) fn group_norm_stats(x: &[f32], len: usize, eps: f32) -> Vec<(f32, f32)> {
    if len == 0 {
        return Vec::new();
    }
    x.par_chunks(len)
        .map(|grp| {
            let (mean, var) = super::kernels::mean_var_pairwise(grp);
            (mean, 1.0 / (var + eps).sqrt())
        })
        .collect()
}

/// GroupNorm backward: `dx` per (image, group) in parallel, each also returning its per-channel sums of `dy·x̂`
/// and `dy` (f64), which are then added into `dγ` and `dβ`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn group_norm_backward(
    x: &[f32],
    dy: &[f32],
    d: &gato_core::ops::GroupNormDims,
    gamma: &[f32],
    stats: &[(f32, f32)],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let cg = d.c / d.groups;
    let len = cg * d.hw;
    if len == 0 {
        return;
    }
    let partials: Vec<Vec<(f64, f64)>> = dx
        .par_chunks_mut(len)
        .zip(x.par_chunks(len).zip(dy.par_chunks(len)))
        .zip(stats.par_iter())
        .enumerate()
        .map(|(ng, ((o, (xg, gy)), &(mean, rstd)))| {
            let c0 = (ng % d.groups) * cg;
            let (mut m1, mut m2) = (0f64, 0f64);
            for (i, (&v, &g)) in xg.iter().zip(gy).enumerate() {
                let gg = (g * gamma[c0 + i / d.hw]) as f64;
                m1 += gg;
                m2 += gg * ((v - mean) * rstd) as f64;
            }
            let (m1, m2) = ((m1 / len as f64) as f32, (m2 / len as f64) as f32);
            let mut sums = vec![(0f64, 0f64); cg];
            for (i, ((o, &v), &g)) in o.iter_mut().zip(xg).zip(gy).enumerate() {
                let xhat = (v - mean) * rstd;
                *o = rstd * (g * gamma[c0 + i / d.hw] - m1 - xhat * m2);
                let s = &mut sums[i / d.hw];
                s.0 += (g * xhat) as f64;
                s.1 += g as f64;
            }
            sums
        })
        .collect();
    let (mut ag, mut ab) = (vec![0f64; d.c], vec![0f64; d.c]);
    for (ng, sums) in partials.iter().enumerate() {
        let c0 = (ng % d.groups) * cg;
        for (i, &(g, b)) in sums.iter().enumerate() {
            ag[c0 + i] += g;
            ab[c0 + i] += b;
        }
    }
    for (o, a) in dgamma.iter_mut().zip(ag) {
        *o = a as f32;
    }
    for (o, a) in dbeta.iter_mut().zip(ab) {
        *o = a as f32;
    }
}
