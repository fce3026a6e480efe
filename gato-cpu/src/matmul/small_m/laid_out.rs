//! Weights laid out once in strips (`CpuPackedWeight`): the strips, their products for any row count, and the
//! cache-line-aligned scratch the per-call packing shares with them.

use super::*;

/// A weight `[K, N]` laid out ahead of time in the strips that [`matmul`] would pack on every call: strip `s`
/// (columns `[16s, 16s + 16)`, zero beyond `N`) is `[K, 16]` row-major at `s·K·16`, so the 64-column panel `p`
/// is the contiguous run of strips `4p ..`. f32 strips start on a cache line. With AVX-512 the tile reads f16/bf16
/// strips as they are; elsewhere each panel is widened first, a sequential pass the hardware prefetchers follow.
#[derive(Clone, Copy)]
pub(crate) enum PackedView<'a> {
    /// f32 strips, 64-byte aligned.
    F32(&'a [f32]),
    /// f16 strips.
    F16(&'a [f16]),
    /// bf16 strips.
    BF16(&'a [bf16]),
}

/// `$body` with `$d` bound to the strips of whichever dtype `$w` holds.
macro_rules! on_strips {
    ($w:expr, $d:ident => $body:expr) => {
        match $w {
            PackedView::F32($d) => $body,
            PackedView::F16($d) => $body,
            PackedView::BF16($d) => $body,
        }
    };
}

/// Bytes per element of `d`.
pub(crate) fn elem_size<T>(_: &[T]) -> usize {
    std::mem::size_of::<T>()
}

/// Values in the strips of a `[k, n]` weight (`n` rounded up to whole 16-column strips).
pub(crate) fn strips_len(k: usize, n: usize) -> usize {
    n.div_ceil(STRIP) * k * STRIP
}

/// Lay `w` (`[K, N]`) out as [`PackedView`] strips, widened to f32 (the caller narrows them back for f16/bf16,
/// exactly). The result has `strips_len(k, n)` values from index `skew`, which is 64-byte aligned.
pub(crate) fn pack_strips(w: Weights<'_>, k: usize, n: usize) -> (Vec<f32>, usize) {
    let mut store = Vec::new();
    let strips = line_aligned(&mut store, strips_len(k, n), true);
    let mut wide = [0.0f32; PANEL];
    // K = 0: no rows to lay out (and no chunks to cut).
    let per_panel = (PANEL / STRIP * k * STRIP).max(1);
    for (p, buf) in strips.chunks_mut(per_panel).enumerate() {
        let c0 = p * PANEL;
        pack_panel(w, k, n, c0, PANEL.min(n - c0), buf, &mut wide);
    }
    let skew = skew_of(&store);
    (store, skew)
}

/// [`matmul`] with `W` already in strips: no packing pass, each panel read front to back. Any `M`; rows go in
/// chunks of at most [`MAX_ROWS`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_packed(
    out: &mut [f32],
    x: &[f32],
    w: PackedView<'_>,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    bias: Option<&[f32]>,
    act: Option<UnaryOp>,
) {
    debug_assert_eq!(out.len(), m * n);
    debug_assert_eq!(x.len(), m * k);
    if m == 0 || n == 0 {
        return;
    }
    for r0 in (0..m).step_by(MAX_ROWS) {
        let rows = MAX_ROWS.min(m - r0);
        packed_rows(
            &mut out[r0 * n..(r0 + rows) * n],
            &x[r0 * k..(r0 + rows) * k],
            w,
            rows,
            k,
            n,
            alpha,
            bias,
            act,
        );
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn packed_rows(
    out: &mut [f32],
    x: &[f32],
    w: PackedView<'_>,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    bias: Option<&[f32]>,
    act: Option<UnaryOp>,
) {
    let out_ptr = SendPtr(out.as_mut_ptr());
    let panels = n.div_ceil(PANEL);
    let groups = rayon::current_num_threads().clamp(1, panels);
    let per = panels.div_ceil(groups);
    (0..groups).into_par_iter().for_each(|g| {
        with_scratch(&PANEL_STORE, |store| {
            for p in g * per..((g + 1) * per).min(panels) {
                let c0 = p * PANEL;
                let width = PANEL.min(n - c0);
                let range = c0 * k..(c0 + width.div_ceil(STRIP) * STRIP) * k;
                // The next panel of this run, fetched during this one's FMAs.
                let next = (p + 1 < ((g + 1) * per).min(panels)).then(|| {
                    let c1 = c0 + PANEL;
                    let (base, elem) = on_strips!(w, d => (d.as_ptr().cast::<u8>(), elem_size(d)));
                    NextPanel::strips(base, c1, PANEL.min(n - c1), k, elem)
                });
                #[cfg(target_arch = "x86_64")]
                if x86::avx512() && width.is_multiple_of(STRIP) {
                    // The tile reads the strips as they are, f16/bf16 widened in registers. SAFETY: this task alone
                    // writes columns [c0, c0 + width) of `out` (M × N); the strips of this panel are `range`.
                    unsafe {
                        on_strips!(w, d => x86::panel512(
                            out_ptr.get(), x, &d[range], m, k, n, c0, width, alpha, bias, next
                        ));
                        panel_activation(out_ptr.get(), m, n, c0, width, act);
                    }
                    continue;
                }
                let buf: &[f32] = match w {
                    PackedView::F32(d) => &d[range],
                    PackedView::F16(d) => widen_aligned(store, Weights::F16(d), range),
                    PackedView::BF16(d) => widen_aligned(store, Weights::BF16(d), range),
                };
                // SAFETY: this task alone writes columns [c0, c0 + width) of `out` (M × N).
                unsafe {
                    panel_product(out_ptr.get(), x, buf, m, k, n, c0, width, alpha, bias, next);
                    panel_activation(out_ptr.get(), m, n, c0, width, act);
                }
            }
        })
    });
}

/// `len` values of `store` starting on a cache line (`store` grows to hold them; `zeroed`: all set to 0).
pub(crate) fn line_aligned(store: &mut Vec<f32>, len: usize, zeroed: bool) -> &mut [f32] {
    if zeroed || store.len() < len + LINE_FLOATS {
        store.clear();
        store.resize(len + LINE_FLOATS, 0.0);
    }
    let skew = skew_of(store);
    &mut store[skew..skew + len]
}

/// Index of the first value of `store` on a cache line.
pub(crate) fn skew_of(store: &[f32]) -> usize {
    store.as_ptr().align_offset(64).min(LINE_FLOATS)
}

/// `w[range]` widened into `store`, starting on a cache line.
pub(crate) fn widen_aligned<'s>(
    store: &'s mut Vec<f32>,
    w: Weights<'_>,
    range: std::ops::Range<usize>,
) -> &'s [f32] {
    let buf = line_aligned(store, range.len(), false);
    w.widen_into(range.start, buf);
    buf
}
