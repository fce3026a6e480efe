//! Causal multi-head attention on the CPU (§2.2, SPEC §6).
//!
//! For each (batch, head) and each query row: scores against the visible keys only, a max-subtracted softmax in a
//! buffer of one row, and the weighted sum of values. Never materialises more than one row of the `Tq × Tk`
//! matrix per thread.

use rayon::prelude::*;

use crate::backend::AttentionSpec;
use crate::ops::AttentionDims;

/// Number of keys query `i` may see: causal limit and padding limit.
#[inline]
pub(crate) fn visible_keys(spec: &AttentionSpec, d: &AttentionDims, b: usize, i: usize) -> usize {
    let mut limit = d.tk;
    if let Some(lens) = &spec.kv_len {
        limit = limit.min(lens[b]);
    }
    if spec.causal {
        limit = limit.min(spec.q_offset + i + 1);
    }
    limit
}

pub(crate) fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d: &AttentionDims,
    spec: &AttentionSpec,
) -> Vec<f32> {
    let (tq, tk, dk, dv) = (d.tq, d.tk, d.d, d.dv);
    let mut out = vec![0.0f32; d.b * d.h * tq * dv];
    if tq == 0 || dv == 0 {
        return out;
    }
    out.par_chunks_mut(tq * dv).enumerate().for_each(|(bh, o)| {
        let b = bh / d.h;
        let qh = &q[bh * tq * dk..(bh + 1) * tq * dk];
        let kh = &k[bh * tk * dk..(bh + 1) * tk * dk];
        let vh = &v[bh * tk * dv..(bh + 1) * tk * dv];
        let mut scores = vec![0.0f32; tk];
        for (i, o_row) in o.chunks_mut(dv).enumerate() {
            let n = visible_keys(spec, d, b, i);
            if n == 0 {
                continue; // no visible key: zeros
            }
            let q_row = &qh[i * dk..(i + 1) * dk];
            let mut max = f32::NEG_INFINITY;
            for (j, s) in scores[..n].iter_mut().enumerate() {
                let k_row = &kh[j * dk..(j + 1) * dk];
                *s = spec.scale * q_row.iter().zip(k_row).map(|(a, b)| a * b).sum::<f32>();
                max = max.max(*s);
            }
            let mut sum = 0.0f32;
            for s in &mut scores[..n] {
                *s = (*s - max).exp();
                sum += *s;
            }
            let inv = 1.0 / sum;
            for (j, &p) in scores[..n].iter().enumerate() {
                let w = p * inv;
                for (o, &x) in o_row.iter_mut().zip(&vh[j * dv..(j + 1) * dv]) {
                    *o += w * x;
                }
            }
        }
    });
    out
}
