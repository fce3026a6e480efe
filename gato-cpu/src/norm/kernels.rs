//! Normalisation kernels: LayerNorm (paper §2.2) and GroupNorm (App. C.2).

use rayon::prelude::*;

use gato_core::ops::GroupNormDims;

/// Mean and biased variance of a slice, two-pass for accuracy (a row of LayerNorm: the model's width).
pub(crate) fn mean_var(x: &[f32]) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, var)
}

/// Σ f(v) over `x` by pairwise summation: runs of up to 32 values summed in order, runs combined in a balanced
/// tree, so the rounding error grows as O(log n) instead of O(n) (`docs/design.md` §10).
fn pairwise_sum(x: &[f32], f: &impl Fn(f32) -> f32) -> f32 {
    const RUN: usize = 32;
    if x.len() <= RUN {
        return x.iter().map(|&v| f(v)).sum();
    }
    let (a, b) = x.split_at(x.len() / 2);
    pairwise_sum(a, f) + pairwise_sum(b, f)
}

/// Mean and biased variance of a slice, two-pass, each pass summed pairwise: GroupNorm's groups are long
/// (channels × 16 × 16 values), where a sequential sum loses about ten times the precision of every other stage.
pub(crate) fn mean_var_pairwise(x: &[f32]) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = pairwise_sum(x, &|v| v) / n;
    let var = pairwise_sum(x, &|v| (v - mean) * (v - mean)) / n;
    (mean, var)
}

/// LayerNorm over rows of `d`.
pub(crate) fn layer_norm(
    x: &[f32],
    d: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    if d == 0 {
        return;
    }
    out.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .for_each(|(o, row)| {
            let (mean, var) = mean_var(row);
            let inv = 1.0 / (var + eps).sqrt();
            for (((o, &v), &g), &b) in o.iter_mut().zip(row).zip(gamma).zip(beta) {
                *o = (v - mean) * inv * g + b;
            }
        });
}

/// GroupNorm on NCHW: the channels of one group are contiguous in memory, so each (n, group) is one slice.
pub(crate) fn group_norm(
    x: &[f32],
    d: &GroupNormDims,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    let cg = d.c / d.groups;
    let group_len = cg * d.hw;
    if group_len == 0 {
        return;
    }
    out.par_chunks_mut(group_len)
        .zip(x.par_chunks(group_len))
        .enumerate()
        .for_each(|(i, (o, grp))| {
            let g = i % d.groups;
            let (mean, var) = mean_var_pairwise(grp);
            let inv = 1.0 / (var + eps).sqrt();
            for (ci, (o_ch, x_ch)) in o.chunks_mut(d.hw).zip(grp.chunks(d.hw)).enumerate() {
                let c = g * cg + ci;
                for (o, &v) in o_ch.iter_mut().zip(x_ch) {
                    *o = (v - mean) * inv * gamma[c] + beta[c];
                }
            }
        });
}
