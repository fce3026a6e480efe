//! Products with few rows, `y[M, N] = α · x[M, K] · W[K, N] (+ bias)`, with `W` stored as f32, f16 or bf16 and
//! widened to f32 in registers (accumulation is f32). This is the acting path (SPEC §7): one decoded token (M = 1)
//! or one observation (M ≈ 40) against a weight matrix.
//!
//! Why not the `gemm` crate here: it packs both operands and is tuned for large M (at M = 1–96 it reaches 20–100
//! GFLOP/s on a 2-core AVX2 machine whose ceiling is ~175, where this file's kernels reach 110–150; from M = 128
//! to 256 both are near 150–175, this file slightly ahead), and it has no mixed f32 × f16/bf16 product. A
//! matrix-vector-like product is bound by reading `W`; narrow weights halve the bytes.
//!
//! Two regimes:
//! - **M = 1 (streaming)**: threads split `K`; each reads its rows of `W` front to back exactly once (sequential
//!   memory access, the best case for the prefetchers), widening in the loop, into a private partial sum.
//! - **1 < M ≤ 256 (packed)**: each thread takes a run of 64-column panels of `W`, widens each with vector
//!   conversions into contiguous, cache-line-aligned 16-column strips, and runs register tiles over them while
//!   prefetching the next panel: with AVX-512, up to 12 rows × 32 columns (24 of the 32 vector registers; rows in
//!   balanced blocks, so M = 40 runs as 4 × 10); with AVX2+FMA, up to 6 rows × 16 columns; a portable loop
//!   elsewhere. The kernel is chosen at run time (`GATO_NO_AVX512=1` forces AVX2, to measure it). An activation,
//!   if any, runs on each output panel while it is in cache.
//!
//! Measured on a 2-core Zen 4 (AVX-512, FMA peak ≈ 215 GFLOP/s), M = 40 against a 768×3072 weight read from
//! memory: 140–170 GFLOP/s (AVX2 tile and scalar packing before: 100–130); with the weight in the last-level
//! cache 175–190. What is left is the packing pass waiting on memory, which [`matmul_packed`] avoids: it takes
//! strips laid out once ([`pack_strips`], `CpuPackedWeight`) for any M, one row included.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use multiversion::multiversion;
use rayon::prelude::*;

use super::elementwise::unary_slice;
use super::math::{axpy, scale};
use super::scratch::{grown, with_scratch};
use crate::backend::UnaryOp;

/// Largest M (rows, batch dims folded in) this path takes; above it the `gemm` crate is as fast or faster
/// (measured on the small preset's shapes: at M = 512 and 1024 it leads by 2–4%).
pub(crate) const MAX_ROWS: usize = 256;

/// Up to this many rows the product streams `W` once, row by row (memory-bound regime).
const STREAM_ROWS: usize = 1;

/// Columns per task in the packed regime (four 16-column strips).
const PANEL: usize = 64;

/// Rows ahead that the packing loop prefetches.
const PREFETCH_ROWS: usize = 16;

/// Columns of one packed strip (two AVX vectors, one AVX-512 vector, one cache line).
const STRIP: usize = 16;

/// f32 values in a 64-byte cache line.
const LINE_FLOATS: usize = 16;

/// A weight matrix `[K, N]`, row-major, in one of the float storage types.
#[derive(Clone, Copy)]
pub(crate) enum Weights<'a> {
    /// f32.
    F32(&'a [f32]),
    /// f16, widened exactly.
    F16(&'a [f16]),
    /// bf16, widened exactly.
    BF16(&'a [bf16]),
}

impl Weights<'_> {
    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        match self {
            Weights::F32(w) => w.len(),
            Weights::F16(w) => w.len(),
            Weights::BF16(w) => w.len(),
        }
    }

    /// Hint the cache to fetch `len` elements from `start` (the packing loop reads rows `n` apart, a pattern the
    /// hardware prefetchers pick up late).
    #[inline]
    fn prefetch(&self, start: usize, len: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            let (ptr, bytes) = match self {
                Weights::F32(w) => (w[start..start + len].as_ptr().cast::<u8>(), len * 4),
                Weights::F16(w) => (w[start..start + len].as_ptr().cast::<u8>(), len * 2),
                Weights::BF16(w) => (w[start..start + len].as_ptr().cast::<u8>(), len * 2),
            };
            for off in (0..bytes).step_by(64) {
                // SAFETY: a prefetch is only a hint; the address lies inside the slice checked above.
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                        ptr.add(off).cast(),
                    )
                };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (start, len);
    }

    /// The `PANEL` columns from `c0` (clamped to `n`): one cache line per row per strip-sized step.
    fn panel_lines(&self, c0: usize, n: usize) -> NextPanel {
        let (ptr, elem) = match self {
            Weights::F32(w) => (w.as_ptr().cast::<u8>(), 4),
            Weights::F16(w) => (w.as_ptr().cast::<u8>(), 2),
            Weights::BF16(w) => (w.as_ptr().cast::<u8>(), 2),
        };
        let width = PANEL.min(n.saturating_sub(c0));
        NextPanel {
            base: ptr.wrapping_add(c0 * elem),
            step: 64,
            stride: n * elem,
            count: (width * elem).div_ceil(64),
        }
    }

    /// `dst[j] = w[start + j]` widened to f32.
    #[inline]
    pub(super) fn widen_into(&self, start: usize, dst: &mut [f32]) {
        let end = start + dst.len();
        match self {
            Weights::F32(w) => dst.copy_from_slice(&w[start..end]),
            Weights::F16(w) => w[start..end].convert_to_f32_slice(dst),
            Weights::BF16(w) => widen_bf16(&w[start..end], dst),
        }
    }
}

/// bf16 → f32 is a 16-bit shift (exact).
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl", "x86_64+avx2+fma", "aarch64+neon"))]
fn widen_bf16(src: &[bf16], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f32::from_bits((s.to_bits() as u32) << 16);
    }
}

/// `y[j] = alpha · y[j] + b[j]`.
#[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn scale_add(y: &mut [f32], alpha: f32, b: &[f32]) {
    for (v, &b) in y.iter_mut().zip(b) {
        *v = alpha.mul_add(*v, b);
    }
}

/// `acc[j] += a · widen(w[j])` for bf16 weights, widening in the loop.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+fma",
    "x86_64+avx2+fma",
    "aarch64+neon"
))]
fn axpy_bf16(acc: &mut [f32], a: f32, w: &[bf16]) {
    for (c, &v) in acc.iter_mut().zip(w) {
        *c = a.mul_add(f32::from_bits((v.to_bits() as u32) << 16), *c);
    }
}

/// The operands of one product `out[M, N] = alpha · x[M, K] · w[K, N] + bias[N]`.
#[derive(Clone, Copy)]
struct Product<'a> {
    x: &'a [f32],
    w: Weights<'a>,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    bias: Option<&'a [f32]>,
    act: Option<UnaryOp>,
}

/// `out[M, N] = act(alpha · x[M, K] · w[K, N] + bias[N])` (bias and activation optional). `out` is overwritten;
/// the activation runs on each output panel while it is still in cache.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    out: &mut [f32],
    x: &[f32],
    w: Weights<'_>,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    bias: Option<&[f32]>,
    act: Option<UnaryOp>,
) {
    debug_assert_eq!(out.len(), m * n);
    debug_assert_eq!(x.len(), m * k);
    debug_assert_eq!(w.len(), k * n);
    if m == 0 || n == 0 {
        return;
    }
    let p = Product {
        x,
        w,
        m,
        k,
        n,
        alpha,
        bias,
        act,
    };
    if m <= STREAM_ROWS {
        stream(out, &p);
    } else {
        packed(out, &p);
    }
}

/// Memory-bound regime: threads split `K`, each streams its contiguous rows of `W` once (`acc[r] += x[r, kk] ·
/// W[kk, :]`, every row read front to back) into its own partial `[M, N]`; the partials are then summed.
fn stream(out: &mut [f32], p: &Product<'_>) {
    let (m, k, n) = (p.m, p.k, p.n);
    let chunks = (rayon::current_num_threads() * 2).clamp(1, k.max(1));
    let per = k.div_ceil(chunks).max(1);
    let len = k.div_ceil(per) * m * n;
    // The partials live in a per-thread buffer kept between calls (decoding allocates nothing). A thread that
    // runs a second product while waiting on its first (rayon work stealing) finds it borrowed and allocates.
    with_scratch(&PARTIALS, |buf| stream_into(out, p, per, grown(buf, len)));
}

thread_local! {
    /// Per thread, [`stream`]'s partial sums.
    static PARTIALS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Per thread, one f16 weight row widened to f32.
    static WIDE_ROW: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`stream`] with `parts` (one `[M, N]` partial per chunk of `per` rows of `W`) as scratch.
fn stream_into(out: &mut [f32], p: &Product<'_>, per: usize, parts: &mut [f32]) {
    let Product {
        x,
        w,
        m,
        k,
        n,
        alpha,
        bias,
        act,
    } = *p;
    parts
        .par_chunks_mut(m * n)
        .enumerate()
        .for_each(|(ci, acc)| {
            acc.fill(0.0);
            for kk in ci * per..((ci + 1) * per).min(k) {
                let wr = kk * n..(kk + 1) * n;
                match w {
                    Weights::F32(wv) => {
                        for r in 0..m {
                            axpy(&mut acc[r * n..(r + 1) * n], x[r * k + kk], &wv[wr.clone()]);
                        }
                    }
                    Weights::BF16(wv) => {
                        for r in 0..m {
                            axpy_bf16(&mut acc[r * n..(r + 1) * n], x[r * k + kk], &wv[wr.clone()]);
                        }
                    }
                    Weights::F16(_) => {
                        let mut widen = |row: &mut [f32]| {
                            w.widen_into(wr.start, row);
                            for r in 0..m {
                                axpy(&mut acc[r * n..(r + 1) * n], x[r * k + kk], row);
                            }
                        };
                        with_scratch(&WIDE_ROW, |row| widen(grown(row, n)));
                    }
                }
            }
        });
    // Sum the partials slice by slice (vectorised), then scale and add the bias per row.
    let mut parts = parts.chunks(m * n);
    match parts.next() {
        Some(first) => out.copy_from_slice(first),
        None => out.fill(0.0),
    }
    for p in parts {
        axpy(out, 1.0, p);
    }
    for row in out.chunks_mut(n) {
        match bias {
            Some(b) => scale_add(row, alpha, b),
            None if alpha != 1.0 => scale(row, alpha),
            None => {}
        }
        if let Some(op) = act {
            unary_slice(op, row);
        }
    }
}

/// Compute-bound regime: each task packs a panel of `PANEL` columns of `W` (widened to f32) into contiguous
/// 16-column strips, then runs register tiles of up to 6 rows × 16 columns over every strip.
fn packed(out: &mut [f32], p: &Product<'_>) {
    let Product {
        x,
        w,
        m,
        k,
        n,
        alpha,
        bias,
        act,
    } = *p;
    let out_ptr = SendPtr(out.as_mut_ptr());
    // Each thread takes a contiguous run of panels, so while it computes one panel it can prefetch the next.
    let panels = n.div_ceil(PANEL);
    let groups = rayon::current_num_threads().clamp(1, panels);
    let per = panels.div_ceil(groups);
    (0..groups).into_par_iter().for_each(|g| {
        with_scratch(&PANEL_STORE, |store| {
            // The packed panel starts on a cache line: every 16-float strip row is then one whole line, and no
            // 64-byte vector load or store of the kernels splits across two.
            let mut wide = [0.0f32; PANEL];
            for p in g * per..((g + 1) * per).min(panels) {
                let c0 = p * PANEL;
                let width = PANEL.min(n - c0);
                let strips = width.div_ceil(STRIP);
                // Only a partial last strip needs its tail zeroed; full strips are overwritten.
                let buf = line_aligned(store, strips * k * STRIP, !width.is_multiple_of(STRIP));
                pack_panel(w, k, n, c0, width, buf, &mut wide);
                // The next panel of this run, fetched into L2 during this panel's FMAs (one cache line per row per
                // strip), so its packing does not wait on memory.
                let next =
                    (p + 1 < ((g + 1) * per).min(panels)).then(|| w.panel_lines(c0 + PANEL, n));
                // SAFETY: this task alone writes columns [c0, c0 + width) of `out` (M × N).
                unsafe {
                    panel_product(out_ptr.get(), x, buf, m, k, n, c0, width, alpha, bias, next)
                };
                // SAFETY: as above.
                unsafe { panel_activation(out_ptr.get(), m, n, c0, width, act) };
            }
        })
    });
}

thread_local! {
    /// Per thread, the scratch a panel is packed or widened into (kept, so acting allocates nothing).
    static PANEL_STORE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Widen the panel of columns `[c0, c0 + width)` of `w` (`[K, N]`) into `buf`'s 16-column strips (strip `s` at
/// `s·k·16`, row `kk` of it at `+ kk·16`). Full strips use vector loads, conversions and stores (AVX-512 or AVX2,
/// chosen at run time); a partial last strip goes through `wide`.
fn pack_panel(
    w: Weights<'_>,
    k: usize,
    n: usize,
    c0: usize,
    width: usize,
    buf: &mut [f32],
    wide: &mut [f32; PANEL],
) {
    let strips = width.div_ceil(STRIP);
    let mut full = width / STRIP;
    debug_assert!(buf.len() >= strips * k * STRIP);
    #[cfg(target_arch = "x86_64")]
    if full > 0 {
        // SAFETY: rows kk·n + c0 .. + full·16 lie inside `w` (checked by the caller's K·N length), and strips
        // 0..full lie inside `buf` (asserted above); the features are checked at run time.
        if !unsafe { x86::pack(w, k, n, c0, full, buf) } {
            full = 0; // no vector packing here: every strip goes through the loop below
        } else if full == strips {
            return;
        }
    }
    for kk in 0..k {
        if kk + PREFETCH_ROWS < k {
            w.prefetch((kk + PREFETCH_ROWS) * n + c0, width);
        }
        let start = kk * n + c0 + full * STRIP;
        let rest = width - full * STRIP;
        let row: &[f32] = match w {
            Weights::F32(wv) => &wv[start..start + rest],
            _ => {
                w.widen_into(start, &mut wide[..rest]);
                &wide[..rest]
            }
        };
        for s in full..strips {
            let at = (s * k + kk) * STRIP;
            let from = (s - full) * STRIP;
            let cols = STRIP.min(rest - from);
            buf[at..at + cols].copy_from_slice(&row[from..from + cols]);
        }
    }
}

/// Whether the AVX-512 kernels run here (the CPU has AVX-512F and `GATO_NO_AVX512` is not set).
pub(super) fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return x86::avx512();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Run the AVX2 kernels (and no bf16 product kernel) on an AVX-512 machine while `on` (tests: results are the
/// same either way).
#[cfg(all(test, target_arch = "x86_64"))]
pub(super) fn force_avx2(on: bool) {
    x86::FORCE_AVX2.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Apply `act` to columns `[c0, c0 + width)` of every row of `out` (`m × n`), while they are in cache.
///
/// # Safety
/// `out` points to `m·n` f32, and no other thread touches these columns.
pub(super) unsafe fn panel_activation(
    out: *mut f32,
    m: usize,
    n: usize,
    c0: usize,
    width: usize,
    act: Option<UnaryOp>,
) {
    if let Some(op) = act {
        for r in 0..m {
            // SAFETY: row r's columns [c0, c0 + width) lie inside `out` (m × n), per the caller.
            let row = std::slice::from_raw_parts_mut(out.add(r * n + c0), width);
            unary_slice(op, row);
        }
    }
}

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
fn elem_size<T>(_: &[T]) -> usize {
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
fn packed_rows(
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
fn line_aligned(store: &mut Vec<f32>, len: usize, zeroed: bool) -> &mut [f32] {
    if zeroed || store.len() < len + LINE_FLOATS {
        store.clear();
        store.resize(len + LINE_FLOATS, 0.0);
    }
    let skew = skew_of(store);
    &mut store[skew..skew + len]
}

/// Index of the first value of `store` on a cache line.
fn skew_of(store: &[f32]) -> usize {
    store.as_ptr().align_offset(64).min(LINE_FLOATS)
}

/// `w[range]` widened into `store`, starting on a cache line.
fn widen_aligned<'s>(
    store: &'s mut Vec<f32>,
    w: Weights<'_>,
    range: std::ops::Range<usize>,
) -> &'s [f32] {
    let buf = line_aligned(store, range.len(), false);
    w.widen_into(range.start, buf);
    buf
}

/// An output pointer handed to rayon tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);

impl SendPtr {
    /// The pointer (a method, so closures capture the `Send` wrapper, not the raw field).
    pub(super) fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: used only to hand disjoint column panels of one output buffer to rayon tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Where the next panel lies: the tile computing strip `s` prefetches `base + s·step + kk·stride` for its `kk`
/// (row-major weight: line `s` of each row; laid-out strips: strip `s`, row by row).
#[derive(Clone, Copy)]
struct NextPanel {
    base: *const u8,
    step: usize,
    stride: usize,
    count: usize,
}

impl NextPanel {
    /// Strips `[c0, c0 + width)` of laid-out strips of `elem`-byte values, `k` rows each.
    fn strips(base: *const u8, c0: usize, width: usize, k: usize, elem: usize) -> Self {
        NextPanel {
            base: base.wrapping_add(c0 * k * elem),
            step: k * STRIP * elem,
            stride: STRIP * elem,
            count: width.div_ceil(STRIP),
        }
    }

    fn strip(&self, s: usize) -> Option<Prefetch> {
        (s < self.count).then(|| Prefetch {
            // SAFETY (of the later reads): prefetches are hints and never fault.
            line: self.base.wrapping_add(s * self.step),
            stride: self.stride,
        })
    }
}

/// One cache line per row of a weight panel to fetch while a strip is computed: `line + kk·stride` for each `kk`.
#[derive(Clone, Copy)]
struct Prefetch {
    line: *const u8,
    stride: usize,
}

/// Every row of the product for the panel of columns `[c0, c0 + width)`, from its packed strips (`buf`, strip `s`
/// at `s·k·16`, each `[K, 16]`, zero beyond `width`). `next` is the next panel's memory, to prefetch while this
/// one computes.
///
/// # Safety
/// `out` points to `m·n` f32, and no other thread writes these columns.
#[allow(clippy::too_many_arguments)]
unsafe fn panel_product(
    out: *mut f32,
    x: &[f32],
    buf: &[f32],
    m: usize,
    k: usize,
    n: usize,
    c0: usize,
    width: usize,
    alpha: f32,
    bias: Option<&[f32]>,
    next: Option<NextPanel>,
) {
    let strips = width.div_ceil(STRIP);
    let mut s = 0;
    #[cfg(not(target_arch = "x86_64"))]
    let _ = next;
    #[cfg(target_arch = "x86_64")]
    if x86::avx512() {
        // Every full strip, in pairs; a partial last strip goes through the portable loop below.
        let full = width / STRIP;
        x86::panel512(out, x, buf, m, k, n, c0, full * STRIP, alpha, bias, next);
        s = full;
    }
    while s < strips {
        let cols = STRIP.min(width - s * STRIP);
        let col = c0 + s * STRIP;
        let strip = &buf[s * k * STRIP..];
        #[cfg(target_arch = "x86_64")]
        if cols == STRIP && x86::available() {
            x86::strip(
                out,
                x,
                strip,
                m,
                k,
                n,
                col,
                alpha,
                bias,
                next.and_then(|p| p.strip(s)),
            );
            s += 1;
            continue;
        }
        for r in 0..m {
            let mut acc = [0.0f32; STRIP];
            for kk in 0..k {
                axpy(
                    &mut acc,
                    x[r * k + kk],
                    &strip[kk * STRIP..(kk + 1) * STRIP],
                );
            }
            for (j, &a) in acc[..cols].iter().enumerate() {
                let b = bias.map_or(0.0, |b| b[col + j]);
                // SAFETY: r < m, col + j < n.
                *out.add(r * n + col + j) = alpha.mul_add(a, b);
            }
        }
        s += 1;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{NextPanel, Prefetch, Weights, PREFETCH_ROWS, STRIP};

    /// Whether the AVX2+FMA tile can run here.
    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// `MR` rows from `r0` × the 16 columns at `col`: twelve (at most) accumulators stay in registers while `k`
    /// runs over the packed strip.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const MR: usize>(
        out: *mut f32,
        x: *const f32,
        strip: *const f32,
        k: usize,
        n: usize,
        r0: usize,
        col: usize,
        alpha: f32,
        bias: Option<&[f32]>,
        pf: Option<Prefetch>,
    ) {
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        let xr = x.add(r0 * k);
        for kk in 0..k {
            if let Some(p) = pf {
                _mm_prefetch::<_MM_HINT_T1>(p.line.wrapping_add(kk * p.stride).cast());
            }
            let w0 = _mm256_loadu_ps(strip.add(kk * STRIP));
            let w1 = _mm256_loadu_ps(strip.add(kk * STRIP + 8));
            for (r, a) in acc.iter_mut().enumerate() {
                let xv = _mm256_broadcast_ss(&*xr.add(r * k + kk));
                a[0] = _mm256_fmadd_ps(xv, w0, a[0]);
                a[1] = _mm256_fmadd_ps(xv, w1, a[1]);
            }
        }
        let al = _mm256_set1_ps(alpha);
        for (r, a) in acc.iter().enumerate() {
            for (v, &av) in a.iter().enumerate() {
                let c = col + 8 * v;
                let b = match bias {
                    Some(b) => _mm256_loadu_ps(b.as_ptr().add(c)),
                    None => _mm256_setzero_ps(),
                };
                _mm256_storeu_ps(out.add((r0 + r) * n + c), _mm256_fmadd_ps(av, al, b));
            }
        }
    }

    /// Pack `full` 16-column strips of the panel at `c0` into `buf` with vector instructions; `false` when this
    /// CPU has neither AVX-512 nor AVX2+F16C (nothing written).
    ///
    /// # Safety
    /// `w` holds `k·n` elements, `c0 + 16·full ≤ n`, and `buf` holds at least `full·k·16`.
    pub(super) unsafe fn pack(
        w: Weights<'_>,
        k: usize,
        n: usize,
        c0: usize,
        full: usize,
        buf: &mut [f32],
    ) -> bool {
        if avx512() {
            pack512(w, k, n, c0, full, buf);
            true
        } else if available() && is_x86_feature_detected!("f16c") {
            pack256(w, k, n, c0, full, buf);
            true
        } else {
            false
        }
    }

    /// Prefetch row `kk + PREFETCH_ROWS` of the panel (`bytes` wide) while packing row `kk`.
    #[inline(always)]
    unsafe fn prefetch_row(base: *const u8, stride: usize, bytes: usize, kk: usize, k: usize) {
        if kk + PREFETCH_ROWS < k {
            let row = base.add((kk + PREFETCH_ROWS) * stride);
            let mut off = 0;
            while off < bytes {
                _mm_prefetch::<_MM_HINT_T0>(row.add(off).cast());
                off += 64;
            }
        }
    }

    /// AVX-512 packing of `full` strips: one 16-lane load (widening) and store per strip row.
    #[target_feature(enable = "avx512f")]
    unsafe fn pack512(w: Weights<'_>, k: usize, n: usize, c0: usize, full: usize, buf: &mut [f32]) {
        #[target_feature(enable = "avx512f")]
        unsafe fn go<T: Lane>(src: *const T, k: usize, n: usize, full: usize, dst: *mut f32) {
            let elem = std::mem::size_of::<T>();
            for kk in 0..k {
                prefetch_row(src.cast(), n * elem, full * STRIP * elem, kk, k);
                let row = src.add(kk * n);
                for s in 0..full {
                    _mm512_storeu_ps(dst.add((s * k + kk) * STRIP), T::load16(row.add(s * STRIP)));
                }
            }
        }
        let dst = buf.as_mut_ptr();
        match w {
            Weights::F32(w) => go(w.as_ptr().add(c0), k, n, full, dst),
            Weights::F16(w) => go(w.as_ptr().add(c0), k, n, full, dst),
            Weights::BF16(w) => go(w.as_ptr().add(c0), k, n, full, dst),
        }
    }

    /// AVX2 packing of `full` strips: two 8-lane loads (widening) and stores per strip row.
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn pack256(w: Weights<'_>, k: usize, n: usize, c0: usize, full: usize, buf: &mut [f32]) {
        #[target_feature(enable = "avx2,f16c")]
        unsafe fn go<T: Lane>(src: *const T, k: usize, n: usize, full: usize, dst: *mut f32) {
            let elem = std::mem::size_of::<T>();
            for kk in 0..k {
                prefetch_row(src.cast(), n * elem, full * STRIP * elem, kk, k);
                let row = src.add(kk * n);
                for h in 0..2 * full {
                    let at = ((h / 2) * k + kk) * STRIP + (h % 2) * 8;
                    _mm256_storeu_ps(dst.add(at), T::load8(row.add(h * 8)));
                }
            }
        }
        let dst = buf.as_mut_ptr();
        match w {
            Weights::F32(w) => go(w.as_ptr().add(c0), k, n, full, dst),
            Weights::F16(w) => go(w.as_ptr().add(c0), k, n, full, dst),
            Weights::BF16(w) => go(w.as_ptr().add(c0), k, n, full, dst),
        }
    }

    /// A strip element the kernels widen to f32 as they load it: 8 at a time in the AVX2 packing, 16 in the
    /// AVX-512 packing and tile.
    pub(super) trait Lane: Copy {
        /// 8 values from `p` as f32.
        ///
        /// # Safety
        /// `p` points to 8 readable values; AVX2 and F16C are available.
        unsafe fn load8(p: *const Self) -> __m256;

        /// 16 values from `p` as f32.
        ///
        /// # Safety
        /// `p` points to 16 readable values; AVX-512F is available.
        unsafe fn load16(p: *const Self) -> __m512;
    }

    impl Lane for f32 {
        #[inline(always)]
        unsafe fn load8(p: *const Self) -> __m256 {
            _mm256_loadu_ps(p)
        }

        #[inline(always)]
        unsafe fn load16(p: *const Self) -> __m512 {
            _mm512_loadu_ps(p)
        }
    }

    /// bf16 → f32 is a 16-bit shift (exact).
    impl Lane for half::bf16 {
        #[inline(always)]
        unsafe fn load8(p: *const Self) -> __m256 {
            let x = _mm_loadu_si128(p.cast());
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(x)))
        }

        #[inline(always)]
        unsafe fn load16(p: *const Self) -> __m512 {
            let h = _mm256_loadu_si256(p.cast());
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        }
    }

    impl Lane for half::f16 {
        #[inline(always)]
        unsafe fn load8(p: *const Self) -> __m256 {
            _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
        }

        #[inline(always)]
        unsafe fn load16(p: *const Self) -> __m512 {
            _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
        }
    }

    /// Every row of the product for the panel of full strips at `c0` (`width` a multiple of 16), two strips at a
    /// time where there are two (32 columns: two 512-bit accumulators per row); f16/bf16 strips are widened in
    /// registers as they load.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn panel512<T: Lane>(
        out: *mut f32,
        x: &[f32],
        strips: &[T],
        m: usize,
        k: usize,
        n: usize,
        c0: usize,
        width: usize,
        alpha: f32,
        bias: Option<&[f32]>,
        next: Option<NextPanel>,
    ) {
        let count = width / STRIP;
        let mut s = 0;
        while s < count {
            let pair = s + 1 < count;
            let pf = [
                next.and_then(|p| p.strip(s)),
                next.and_then(|p| if pair { p.strip(s + 1) } else { None }),
            ];
            let col = c0 + s * STRIP;
            strips512(
                out,
                x,
                &strips[s * k * STRIP..],
                m,
                k,
                n,
                col,
                alpha,
                bias,
                pf,
                pair,
            );
            s += if pair { 2 } else { 1 };
        }
    }

    /// Set by tests to run the AVX2 kernels on an AVX-512 machine (results are the same either way).
    #[cfg(test)]
    pub(super) static FORCE_AVX2: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(false);

    /// Whether the AVX-512 kernels can run here and were not switched off with the environment variable
    /// `GATO_NO_AVX512` (set, any value), which measures the AVX2 kernels on an AVX-512 machine.
    pub(super) fn avx512() -> bool {
        use std::sync::OnceLock;
        static ON: OnceLock<bool> = OnceLock::new();
        #[cfg(test)]
        if FORCE_AVX2.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        *ON.get_or_init(|| {
            is_x86_feature_detected!("avx512f") && std::env::var_os("GATO_NO_AVX512").is_none()
        })
    }

    /// `MR` rows from `r0` × `NV` strips (16 columns each) at `col`: up to 24 accumulators in the 32 AVX-512
    /// registers, the `x` values broadcast from memory.
    #[inline]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile512<T: Lane, const MR: usize, const NV: usize>(
        out: *mut f32,
        x: *const f32,
        strip: *const T,
        k: usize,
        n: usize,
        r0: usize,
        col: usize,
        alpha: f32,
        bias: Option<&[f32]>,
        pf: [Option<Prefetch>; 2],
        phase: usize,
        period: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let xr = x.add(r0 * k);
        let mut due = phase;
        for kk in 0..k {
            if due == 0 {
                for p in pf.iter().flatten() {
                    _mm_prefetch::<_MM_HINT_T1>(p.line.wrapping_add(kk * p.stride).cast());
                }
                due = period;
            }
            due -= 1;
            let mut w = [_mm512_setzero_ps(); NV];
            for (v, wv) in w.iter_mut().enumerate() {
                *wv = T::load16(strip.add(v * k * STRIP + kk * STRIP));
            }
            for (r, a) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(*xr.add(r * k + kk));
                for (av, &wv) in a.iter_mut().zip(&w) {
                    *av = _mm512_fmadd_ps(xv, wv, *av);
                }
            }
        }
        let al = _mm512_set1_ps(alpha);
        for (r, a) in acc.iter().enumerate() {
            for (v, &av) in a.iter().enumerate() {
                let c = col + STRIP * v;
                let b = match bias {
                    Some(b) => _mm512_loadu_ps(b.as_ptr().add(c)),
                    None => _mm512_setzero_ps(),
                };
                _mm512_storeu_ps(out.add((r0 + r) * n + c), _mm512_fmadd_ps(av, al, b));
            }
        }
    }

    /// Every row of the product for one full strip, or two adjacent ones (`pair`), with AVX-512. Rows go in
    /// blocks of near-equal height ≤ 12 (M = 40: four blocks of 10, not three of 12 and a latency-bound 4).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn strips512<T: Lane>(
        out: *mut f32,
        x: &[f32],
        strip: &[T],
        m: usize,
        k: usize,
        n: usize,
        col: usize,
        alpha: f32,
        bias: Option<&[f32]>,
        pf: [Option<Prefetch>; 2],
        pair: bool,
    ) {
        let (xp, sp) = (x.as_ptr(), strip.as_ptr());
        let blocks = m.div_ceil(12);
        let mut r = 0;
        for b in 0..blocks {
            let rows = (m - r).div_ceil(blocks - b);
            // Block b prefetches the next panel's rows b, b + blocks, ...: the fetches spread over the whole
            // panel's compute instead of bursting during the first block.
            let p = pf;
            macro_rules! go {
                ($($mr:literal)*) => {
                    match (rows, pair) {
                        $(
                            ($mr, true) => tile512::<T, $mr, 2>(out, xp, sp, k, n, r, col, alpha, bias, p, b, blocks),
                            ($mr, false) => tile512::<T, $mr, 1>(out, xp, sp, k, n, r, col, alpha, bias, p, b, blocks),
                        )*
                        _ => unreachable!("row blocks hold 1 to 12 rows"),
                    }
                };
            }
            go!(1 2 3 4 5 6 7 8 9 10 11 12);
            r += rows;
        }
    }

    /// Every row of the product for one full strip.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn strip(
        out: *mut f32,
        x: &[f32],
        strip: &[f32],
        m: usize,
        k: usize,
        n: usize,
        col: usize,
        alpha: f32,
        bias: Option<&[f32]>,
        pf: Option<Prefetch>,
    ) {
        let (xp, sp) = (x.as_ptr(), strip.as_ptr());
        // The first row block issues the next panel's prefetches; the others run without.
        let mut pf = pf;
        let mut r = 0;
        while r + 6 <= m {
            tile::<6>(out, xp, sp, k, n, r, col, alpha, bias, pf.take());
            r += 6;
        }
        match m - r {
            0 => {}
            1 => tile::<1>(out, xp, sp, k, n, r, col, alpha, bias, pf),
            2 => tile::<2>(out, xp, sp, k, n, r, col, alpha, bias, pf),
            3 => tile::<3>(out, xp, sp, k, n, r, col, alpha, bias, pf),
            4 => tile::<4>(out, xp, sp, k, n, r, col, alpha, bias, pf),
            _ => tile::<5>(out, xp, sp, k, n, r, col, alpha, bias, pf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cpu::test_util::{on_both_kernel_widths, reference, vals};

    #[test]
    fn every_row_count_and_weight_type_matches_f64() {
        // On an AVX-512 machine, the AVX2 kernels too (CI's machines have AVX-512).
        on_both_kernel_widths("default kernels", "AVX2 kernels", check_all_shapes);
    }

    fn check_all_shapes(kernels: &str) {
        // Column counts hit the paired, single and partial strips; rows hit every tile height (1–12 and 1–6 rows,
        // balanced blocks).
        for &(m, k, n) in &[
            (1, 37, 200),
            (2, 64, 48),
            (3, 5, 17),
            (3, 0, 17),
            (7, 33, 144),
            (13, 70, 130),
            (64, 16, 272),
            (200, 48, 80),
            (40, 96, 208),
            (23, 31, 96),
            (300, 20, 70),
        ] {
            let x = vals(m * k, 1);
            let w32 = vals(k * n, 2);
            let bias = vals(n, 3);
            let w16: Vec<f16> = w32.iter().map(|&v| f16::from_f32(v)).collect();
            let wb16: Vec<bf16> = w32.iter().map(|&v| bf16::from_f32(v)).collect();
            for (name, w, wide) in [
                (
                    "f32",
                    Weights::F32(&w32),
                    w32.iter().map(|&v| v as f64).collect::<Vec<_>>(),
                ),
                (
                    "f16",
                    Weights::F16(&w16),
                    w16.iter().map(|v| v.to_f64()).collect(),
                ),
                (
                    "bf16",
                    Weights::BF16(&wb16),
                    wb16.iter().map(|v| v.to_f64()).collect(),
                ),
            ] {
                for (alpha, b, act) in [
                    (1.0, None, None),
                    (0.5, Some(bias.as_slice()), None),
                    (1.0, Some(bias.as_slice()), Some(UnaryOp::Gelu)),
                ] {
                    let mut out = vec![f32::NAN; m * n];
                    matmul(&mut out, &x, w, m, k, n, alpha, b, act);
                    // The same product from strips laid out ahead of time (f16/bf16 kept narrow).
                    let (strips, skew) = pack_strips(w, k, n);
                    let len = strips_len(k, n);
                    let strips = &strips[skew..skew + len];
                    let narrow16: Vec<f16> = strips.iter().map(|&v| f16::from_f32(v)).collect();
                    let narrowb: Vec<bf16> = strips.iter().map(|&v| bf16::from_f32(v)).collect();
                    let view = match w {
                        Weights::F32(_) => PackedView::F32(strips),
                        Weights::F16(_) => PackedView::F16(&narrow16),
                        Weights::BF16(_) => PackedView::BF16(&narrowb),
                    };
                    let mut from_strips = vec![f32::NAN; m * n];
                    matmul_packed(&mut from_strips, &x, view, m, k, n, alpha, b, act);
                    if STREAM_ROWS < m && m <= MAX_ROWS {
                        // Same tiles, same order: the same bits (one row streams instead).
                        assert_eq!(
                            out, from_strips,
                            "{kernels}, {name} m={m} k={k} n={n}: packed"
                        );
                    }
                    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                    let mut want = reference(&x64, &wide, (m, k, n), alpha, b);
                    if act.is_some() {
                        // x·Φ(x), Φ from f64 erfc.
                        want.iter_mut()
                            .for_each(|v| *v *= 0.5 * libm::erfc(-*v / std::f64::consts::SQRT_2));
                    }
                    let err = out
                        .iter()
                        .chain(&from_strips)
                        .zip(want.iter().chain(&want))
                        .map(|(&g, &r)| (g as f64 - r).abs())
                        .fold(0.0, f64::max);
                    assert!(
                        err <= 1e-5 * (k + 1) as f64,
                        "{kernels}, {name} m={m} k={k} n={n} alpha={alpha}: error {err}"
                    );
                }
            }
        }
    }
}
