//! Normalisation and softmax kernels: LayerNorm (§2.2), GroupNorm (App. C.2), softmax and log-softmax.

use rayon::prelude::*;

use super::math;
use crate::ops::GroupNormDims;

/// Mean and biased variance of a slice, two-pass for accuracy.
fn mean_var(x: &[f32]) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / n;
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
            let (mean, var) = mean_var(grp);
            let inv = 1.0 / (var + eps).sqrt();
            for (ci, (o_ch, x_ch)) in o.chunks_mut(d.hw).zip(grp.chunks(d.hw)).enumerate() {
                let c = g * cg + ci;
                for (o, &v) in o_ch.iter_mut().zip(x_ch) {
                    *o = (v - mean) * inv * gamma[c] + beta[c];
                }
            }
        });
}

/// Softmax (or log-softmax) over rows of `d`, max-subtracted.
pub(crate) fn softmax(x: &[f32], d: usize, log: bool, out: &mut [f32]) {
    if d == 0 {
        return;
    }
    out.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .for_each(|(o, row)| {
            let max = math::max(row);
            o.copy_from_slice(row);
            let sum = math::exp_shifted_sum(o, max);
            if log {
                let lse = max + sum.ln();
                o.iter_mut().zip(row).for_each(|(o, &v)| *o = v - lse);
            } else {
                math::scale(o, 1.0 / sum);
            }
        });
}
