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
