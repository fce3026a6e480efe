//! Softmax and log-softmax over the last dim, max-subtracted, rows in parallel.

use rayon::prelude::*;

use crate::elementwise::math;

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

/// Softmax cross-entropy of rows of `logits` (`[n, v]`) against `targets` (a [`gato_core::ops::PAD_ID`] target:
/// no loss, zero gradient), scaled: `out = scale · (softmax − one_hot)`; returns `scale · Σ (lse − logit[t])`,
/// summed in f64.
pub(crate) fn cross_entropy(
    logits: &[f32],
    v: usize,
    targets: &[u32],
    scale: f32,
    out: &mut [f32],
) -> f64 {
    if v == 0 {
        return 0.0;
    }
    out.par_chunks_mut(v)
        .zip(logits.par_chunks(v).zip(targets.par_iter()))
        .map(|(o, (row, &t))| {
            if t == gato_core::ops::PAD_ID {
                o.fill(0.0);
                return 0.0;
            }
            let max = math::max(row);
            o.copy_from_slice(row);
            let sum = math::exp_shifted_sum(o, max);
            let lse = max + sum.ln();
            let inv = scale / sum;
            o.iter_mut().for_each(|p| *p *= inv);
            o[t as usize] -= scale;
            scale as f64 * (lse - row[t as usize]) as f64
        })
        .sum()
}
