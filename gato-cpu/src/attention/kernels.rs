//! Causal multi-head attention on the CPU (§2.2, design.md §6). A few query rows (decoding) are computed directly per
//! row; more are tiled: for each (batch, head) and each tile of up to
//! `TILE` query rows, `S = scale · Q_tile · K[..visible]ᵀ` through the GEMM, the causal/padding mask and a
//! max-subtracted softmax per row, then `O_tile = P · V[..visible]`. Only one `TILE × Tk` block of scores exists per
//! thread at a time — the full `Tq × Tk` matrix is never materialised — and both products run at GEMM speed.

use rayon::prelude::*;

use crate::elementwise::math;
use crate::matmul::gemm::matmul;
use crate::matmul::small_m::Weights;
use crate::scratch::{grown, with_scratch};
use gato_core::backend::{AttentionSpec, MatmulSpec};
use gato_core::ops::{AttentionDims, MatmulDims};
use gato_core::shape::Shape;

/// Query rows per tile.
const TILE: usize = 64;

thread_local! {
    /// Per worker thread, the scores of one query row in [`direct`] (kept, so decoding allocates nothing).
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

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

/// Every query row of head `bh` (batch `bh / H`) into `o` (`[tq, dv]`): scores `scale · q·kⱼ` over the visible
/// keys, max-subtracted softmax, `Σ pⱼ vⱼ`.
fn direct(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d: &AttentionDims,
    spec: &AttentionSpec,
    bh: usize,
    o: &mut [f32],
) {
    let (tq, tk, dk, dv) = (d.tq, d.tk, d.d, d.dv);
    let b = bh / d.h;
    let mut rows = |scores: &mut [f32]| {
        for (i, row) in o.chunks_mut(dv).enumerate() {
            let n = visible_keys(spec, d, b, i);
            if n == 0 {
                continue; // nothing visible: zeros
            }
            let qi = &q[(bh * tq + i) * dk..(bh * tq + i + 1) * dk];
            let keys = &k[bh * tk * dk..(bh * tk + n) * dk];
            for (s, kj) in scores[..n].iter_mut().zip(keys.chunks_exact(dk)) {
                *s = spec.scale * math::dot(qi, kj);
            }
            let max = math::max(&scores[..n]);
            let sum = math::exp_shifted_sum(&mut scores[..n], max);
            let inv = 1.0 / sum;
            let values = &v[bh * tk * dv..(bh * tk + n) * dv];
            for (&p, vj) in scores[..n].iter().zip(values.chunks_exact(dv)) {
                math::axpy(row, p * inv, vj);
            }
        }
    };
    // The score row lives on the stack for caches up to `STACK_SCORES` keys (Gato's window is 1024), so decoding
    // allocates nothing whichever worker runs a head; longer caches use a per-thread buffer, grown to a power of
    // two so a growing cache reallocates it a handful of times, not per token.
    if tk <= STACK_SCORES {
        let mut stack = [0.0f32; STACK_SCORES];
        rows(&mut stack[..tk]);
    } else {
        with_scratch(&SCORES, |scores| {
            if scores.len() < tk {
                scores.resize(tk.next_power_of_two(), 0.0);
            }
            rows(&mut scores[..tk])
        });
    }
}

/// Score-row length kept on the stack by [`direct`] (16 KiB).
const STACK_SCORES: usize = 4096;

fn dims(m: usize, n: usize, k: usize) -> MatmulDims {
    MatmulDims {
        batch: 1,
        m,
        n,
        k,
        b_batched: false,
        out: Shape::new([m, n]),
    }
}

thread_local! {
    /// Per worker thread, one tile's scores (kept, so a tile allocates nothing).
    static TILE_SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Per worker thread, one head's keys transposed into 16-key strips (the AVX-512 tile).
    static KEYS_T: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Score columns per row of a tile over `kmax` keys: a whole number of 16-key strips for the AVX-512 tile.
fn score_stride(d: &AttentionDims, kmax: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if crate::attention::avx512::available(d.d, d.dv) {
        return kmax.next_multiple_of(16);
    }
    let _ = d;
    kmax
}

/// One tile of `rows` query rows (`q`, the first at query `i0`, batch `b`) into `o` (`[rows, dv]`) against the
/// `kmax` keys and values its last row sees, with `s` (`rows` rows of [`score_stride`] columns) for the scores:
/// `S = scale · Q · Kᵀ`, per row the masked, max-subtracted exponentials `e`, then `O = (e · V) / Σ e` — the
/// division applied to the `dv` outputs of a row rather than to its `kmax` probabilities.
#[allow(clippy::too_many_arguments)]
fn tile(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d: &AttentionDims,
    spec: &AttentionSpec,
    b: usize,
    i0: usize,
    kmax: usize,
    o: &mut [f32],
    s: &mut [f32],
) {
    let (dk, dv) = (d.d, d.dv);
    let rows = o.len() / dv;
    let ld = s.len() / rows;
    #[cfg(target_arch = "x86_64")]
    let fast = crate::attention::avx512::available(dk, dv);
    #[cfg(not(target_arch = "x86_64"))]
    let fast = false;
    if fast {
        #[cfg(target_arch = "x86_64")]
        with_scratch(&KEYS_T, |kt| {
            use crate::attention::avx512::{transpose_keys, Product};
            let kt = grown(kt, ld * dk);
            // SAFETY: `available` checked the CPU; `k` holds kmax·dk values, `kt` ⌈kmax/16⌉·16·dk, `s` rows·ld.
            unsafe {
                transpose_keys(k, kmax, dk, kt);
                Product {
                    out: s,
                    ldo: ld,
                    x: q,
                    ldx: dk,
                    w: kt,
                    vstep: dk * 16,
                    kstride: 16,
                    m: rows,
                    k: dk,
                    n: ld,
                    alpha: spec.scale,
                }
                .run();
            }
        });
    } else {
        let spec_s = MatmulSpec {
            trans_a: false,
            trans_b: true,
            alpha: spec.scale,
        };
        matmul(
            q,
            Weights::F32(k),
            &dims(rows, kmax, dk),
            &spec_s,
            1,
            None,
            None,
            s,
        );
    }
    let mut inv = [0.0f32; TILE];
    for (r, row) in s.chunks_mut(ld).enumerate() {
        let n = visible_keys(spec, d, b, i0 + r);
        if n == 0 {
            row.fill(0.0);
            continue;
        }
        let max = math::max(&row[..n]);
        inv[r] = 1.0 / math::exp_shifted_sum(&mut row[..n], max);
        row[n..].fill(0.0);
    }
    if fast {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; `v` holds kmax·dv values, read as a row-major [kmax, dv] matrix.
        unsafe {
            crate::attention::avx512::Product {
                out: o,
                ldo: dv,
                x: s,
                ldx: ld,
                w: v,
                vstep: 16,
                kstride: dv,
                m: rows,
                k: kmax,
                n: dv,
                alpha: 1.0,
            }
            .run();
        }
    } else {
        matmul(
            s,
            Weights::F32(v),
            &dims(rows, dv, kmax),
            &MatmulSpec::default(),
            1,
            None,
            None,
            o,
        );
    }
    for (row, &f) in o.chunks_mut(dv).zip(&inv) {
        math::scale(row, f);
    }
}

/// Up to this many query rows (decoding a token), each row is computed directly — dot products with the visible
/// keys, softmax, weighted sum of values — instead of through two tiny GEMM calls per head.
const DIRECT_ROWS: usize = 4;

pub(crate) fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d: &AttentionDims,
    spec: &AttentionSpec,
    out: &mut [f32],
) {
    let (tq, tk, dk, dv) = (d.tq, d.tk, d.d, d.dv);
    if tq == 0 || dv == 0 {
        return;
    }
    if tq <= DIRECT_ROWS {
        out.par_chunks_mut(tq * dv)
            .enumerate()
            .for_each(|(bh, o)| direct(q, k, v, d, spec, bh, o));
        return;
    }
    // Work items: (batch·head, tile of query rows); each writes its own rows of `out`.
    let mut chunks: Vec<(usize, usize, &mut [f32])> = Vec::new();
    for (bh, head_out) in out.chunks_mut(tq * dv).enumerate() {
        for (t, tile) in head_out.chunks_mut(TILE * dv).enumerate() {
            chunks.push((bh, t * TILE, tile));
        }
    }
    chunks.into_par_iter().for_each(|(bh, i0, o)| {
        let b = bh / d.h;
        let rows = o.len() / dv;
        // Keys visible to the last row of the tile bound the whole tile; earlier rows mask the rest.
        let kmax = visible_keys(spec, d, b, i0 + rows - 1);
        if kmax == 0 {
            return; // nothing visible: zeros (padding rows)
        }
        let qh = &q[(bh * tq + i0) * dk..(bh * tq + i0 + rows) * dk];
        let kh = &k[bh * tk * dk..(bh * tk + kmax) * dk];
        let vh = &v[bh * tk * dv..(bh * tk + kmax) * dv];
        // The scores live in a per-thread buffer, not zeroed: the product overwrites it.
        let ld = score_stride(d, kmax);
        with_scratch(&TILE_SCORES, |buf| {
            tile(qh, kh, vh, d, spec, b, i0, kmax, o, grown(buf, rows * ld))
        });
    });
}
