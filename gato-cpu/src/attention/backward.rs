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

/// Query rows per tile: the scores of a tile are `ROWS × keys` (never the whole `T × T` matrix).
const ROWS: usize = 64;

/// `dst (+)= alpha · op(a) · op(b)` on row-major buffers with explicit strides, on the calling thread (heads are
/// the parallel work items). `a` is `[m, k]` with strides `(a_rs, a_cs)`, `b` is `[k, n]` with `(b_rs, b_cs)`, `dst`
/// is `[m, n]` with row stride `dst_rs`.
#[allow(clippy::too_many_arguments)]
fn tile_gemm(
    dst: &mut [f32],
    dst_rs: usize,
    (a, a_rs, a_cs): (&[f32], usize, usize),
    (b, b_rs, b_cs): (&[f32], usize, usize),
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    accumulate: bool,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // Every index the strides reach lies inside its buffer.
    assert!(dst.len() >= (m - 1) * dst_rs + n);
    assert!(a.len() > (m - 1) * a_rs + (k - 1) * a_cs);
    assert!(b.len() > (k - 1) * b_rs + (n - 1) * b_cs);
    // SAFETY: the asserts above bound every element the product reads or writes; `dst` does not alias `a` or `b`
    // (a `&mut` and two `&` borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The scores of query rows `r0..r0 + nq` of one head against keys `0..end`, scaled: `s = scale · Q K^T`, into
/// `s` (`[nq, end]`, row stride `end`).
fn scores(
    qh: &[f32],
    kh: &[f32],
    kd: usize,
    scale: f32,
    (r0, nq, end): (usize, usize, usize),
    s: &mut [f32],
) {
    tile_gemm(
        s,
        end,
        (&qh[r0 * kd..], kd, 1),
        (kh, 1, kd),
        (nq, end, kd),
        scale,
        false,
    );
}

/// Row log-sum-exp of the scores, `out: [B·H·Tq]`, a tile of query rows at a time.
pub(crate) fn lse(q: &[f32], k: &[f32], d: &AttentionDims, spec: &AttentionSpec, out: &mut [f32]) {
    let (tq, tk, dk) = (d.tq, d.tk, d.d);
    out.par_chunks_mut(tq.max(1))
        .enumerate()
        .for_each(|(bh, rows)| {
            let bi = bh / d.h.max(1);
            let (qh, kh) = (
                &q[bh * tq * dk..(bh + 1) * tq * dk],
                &k[bh * tk * dk..(bh + 1) * tk * dk],
            );
            let mut s = vec![0f32; ROWS * tk];
            for r0 in (0..tq).step_by(ROWS) {
                let nq = ROWS.min(tq - r0);
                let end = visible_end(spec, d, bi, r0 + nq - 1);
                if end > 0 && dk > 0 {
                    scores(qh, kh, dk, spec.scale, (r0, nq, end), &mut s[..nq * end]);
                }
                for r in 0..nq {
                    let e = visible_end(spec, d, bi, r0 + r);
                    let o = &mut rows[r0 + r];
                    if e == 0 {
                        *o = f32::NEG_INFINITY;
                        continue;
                    }
                    let row = &mut s[r * end..r * end + e];
                    if dk == 0 {
                        row.fill(0.0);
                    }
                    let max = math::max(row);
                    let sum = math::exp_shifted_sum(row, max);
                    *o = max + sum.ln();
                }
            }
        });
}

/// `(dq, dk, dv)` into zeroed outputs shaped like q, k and v (the conformance suite runs several tiles). Per head and tile of query rows, from the saved
/// log-sum-exp: `P = exp(S − lse)`, `dV += Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ⊙ (dP − rowsum(dO ⊙ O))`,
/// `dQ = scale · dS K`, `dK += scale · dSᵀ Q` — five small products per tile.
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
            let (mut p, mut ds) = (vec![0f32; ROWS * tk], vec![0f32; ROWS * tk]);
            for r0 in (0..tq).step_by(ROWS) {
                let nq = ROWS.min(tq - r0);
                let end = visible_end(spec, d, bi, r0 + nq - 1);
                if end == 0 {
                    continue;
                }
                let (p, ds) = (&mut p[..nq * end], &mut ds[..nq * end]);
                scores(qh, kh, kd, spec.scale, (r0, nq, end), p);
                for r in 0..nq {
                    let i = r0 + r;
                    let (l, e) = (lse[bh * tq + i], visible_end(spec, d, bi, i));
                    let row = &mut p[r * end..(r + 1) * end];
                    if e == 0 || l == f32::NEG_INFINITY {
                        row.fill(0.0);
                        continue;
                    }
                    math::exp_shifted_sum(&mut row[..e], l);
                    row[e..].fill(0.0);
                }
                let g = &gh[r0 * vd..(r0 + nq) * vd];
                // dV[0..end] += Pᵀ · dO.
                tile_gemm(dv, vd, (p, 1, end), (g, vd, 1), (end, vd, nq), 1.0, true);
                // dP = dO · Vᵀ, then dS = P ⊙ (dP − Dᵢ).
                tile_gemm(ds, end, (g, vd, 1), (vh, 1, vd), (nq, end, vd), 1.0, false);
                for r in 0..nq {
                    let i = r0 + r;
                    let di = math::dot(&gh[i * vd..(i + 1) * vd], &oh[i * vd..(i + 1) * vd]);
                    let (pr, dr) = (&p[r * end..(r + 1) * end], &mut ds[r * end..(r + 1) * end]);
                    dr.iter_mut()
                        .zip(pr)
                        .for_each(|(x, &pv)| *x = pv * (*x - di));
                }
                // dQ = scale · dS · K;  dK[0..end] += scale · dSᵀ · Q.
                let dqb = &mut dq[r0 * kd..(r0 + nq) * kd];
                tile_gemm(
                    dqb,
                    kd,
                    (ds, end, 1),
                    (kh, kd, 1),
                    (nq, kd, end),
                    spec.scale,
                    false,
                );
                let qb = &qh[r0 * kd..(r0 + nq) * kd];
                tile_gemm(
                    dk,
                    kd,
                    (ds, 1, end),
                    (qb, kd, 1),
                    (end, kd, nq),
                    spec.scale,
                    true,
                );
            }
        });
}
