//! Attention's training forward (the row log-sum-exp it saves) and backward (design.md §8), flash-style: the
//! scores are recomputed one query row at a time from Q and K, so no `T × T` matrix is ever held. Heads are the
//! parallel work items: each owns its rows of dQ and its dK and dV, so nothing races.

use rayon::prelude::*;

use crate::elementwise::math;
use gato_core::backend::AttentionSpec;
use gato_core::ops::AttentionDims;

/// Whether query `i` (of batch entry `bi`) sees key `j`.
fn visible(spec: &AttentionSpec, bi: usize, i: usize, j: usize) -> bool {
    (!spec.causal || j <= spec.q_offset + i) && spec.kv_len.as_ref().is_none_or(|l| j < l[bi])
}

/// Keys query `i` sees: `0..end` (causal and padding masks both cut a prefix).
fn visible_end(spec: &AttentionSpec, d: &AttentionDims, bi: usize, i: usize) -> usize {
    let mut end = d.tk;
    if spec.causal {
        end = end.min(spec.q_offset + i + 1);
    }
    if let Some(l) = &spec.kv_len {
        end = end.min(l[bi]);
    }
    debug_assert!((0..end).all(|j| visible(spec, bi, i, j)));
    end
}

/// Row log-sum-exp of the scores, `out: [B·H·Tq]`.
pub(crate) fn lse(q: &[f32], k: &[f32], d: &AttentionDims, spec: &AttentionSpec, out: &mut [f32]) {
    let (tq, tk, dk) = (d.tq, d.tk, d.d);
    out.par_chunks_mut(tq.max(1))
        .enumerate()
        .for_each(|(bh, rows)| {
            let bi = bh / d.h.max(1);
            let mut s = vec![0f32; tk];
            for (i, o) in rows.iter_mut().enumerate() {
                let end = visible_end(spec, d, bi, i);
                if end == 0 {
                    *o = f32::NEG_INFINITY;
                    continue;
                }
                let qi = &q[(bh * tq + i) * dk..(bh * tq + i + 1) * dk];
                for (j, s) in s[..end].iter_mut().enumerate() {
                    *s = spec.scale * math::dot(qi, &k[(bh * tk + j) * dk..(bh * tk + j + 1) * dk]);
                }
                let max = math::max(&s[..end]);
                let sum = math::exp_shifted_sum(&mut s[..end], max);
                *o = max + sum.ln();
            }
        });
}

/// `(dq, dk, dv)` into zeroed outputs shaped like q, k and v.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    o: &[f32],
    lse: &[f32],
    dout: &[f32],
    d: &AttentionDims,
    spec: &AttentionSpec,
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let (tq, tk, kd, vd) = (d.tq, d.tk, d.d, d.dv);
    // With no value columns every gradient is zero (the outputs are empty).
    if tq == 0 || tk == 0 || kd == 0 || vd == 0 {
        return;
    }
    dq.par_chunks_mut(tq * kd)
        .zip(
            dk.par_chunks_mut(tk * kd)
                .zip(dv.par_chunks_mut(tk * vd.max(1))),
        )
        .enumerate()
        .for_each(|(bh, (dq, (dk, dv)))| {
            let bi = bh / d.h.max(1);
            let (qh, kh, vh) = (
                &q[bh * tq * kd..(bh + 1) * tq * kd],
                &k[bh * tk * kd..(bh + 1) * tk * kd],
                &v[bh * tk * vd..(bh + 1) * tk * vd],
            );
            let (oh, gh) = (
                &o[bh * tq * vd..(bh + 1) * tq * vd],
                &dout[bh * tq * vd..(bh + 1) * tq * vd],
            );
            for i in 0..tq {
                let l = lse[bh * tq + i];
                let end = visible_end(spec, d, bi, i);
                if end == 0 || l == f32::NEG_INFINITY {
                    continue;
                }
                let (qi, gi, oi) = (
                    &qh[i * kd..(i + 1) * kd],
                    &gh[i * vd..(i + 1) * vd],
                    &oh[i * vd..(i + 1) * vd],
                );
                let di = math::dot(gi, oi);
                let dqi = &mut dq[i * kd..(i + 1) * kd];
                for j in 0..end {
                    let (kj, vj) = (&kh[j * kd..(j + 1) * kd], &vh[j * vd..(j + 1) * vd]);
                    let p = (spec.scale * math::dot(qi, kj) - l).exp();
                    let ds = p * (math::dot(gi, vj) - di);
                    math::axpy(&mut dv[j * vd..(j + 1) * vd], p, gi);
                    math::axpy(dqi, spec.scale * ds, kj);
                    math::axpy(&mut dk[j * kd..(j + 1) * kd], spec.scale * ds, qi);
                }
            }
        });
}
