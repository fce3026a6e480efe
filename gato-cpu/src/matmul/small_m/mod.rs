//! Products with few rows, `y[M, N] = α · x[M, K] · W[K, N] (+ bias)`, with `W` stored as f32, f16 or bf16 and
//! widened to f32 in registers (accumulation is f32). This is the acting path (design.md §7): one decoded token (M = 1)
//! or one observation (M ≈ 40) against a weight matrix.
//!
//! Why not the `gemm` crate here: it packs both operands and is tuned for large M (for M up to about 100 these
//! kernels are several times faster; from M = 128 to 256 both are close), and it has no mixed f32 × f16/bf16
//! product. A
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
//! With the weight coming from memory, what is left is the packing pass waiting on it, which [`matmul_packed`]
//! avoids: it takes strips laid out once ([`pack_strips`], `CpuPackedWeight`) for any M, one row included.
//! (Figures: `docs/benchmarks.md`.)

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};
use multiversion::multiversion;
use rayon::prelude::*;

use crate::elementwise::kernels::unary_slice;
use crate::elementwise::math::{axpy, scale};
use crate::scratch::{grown, with_scratch};
use gato_core::backend::UnaryOp;

/// Largest M (rows, batch dims folded in) this path takes; above it the `gemm` crate is as fast or faster
/// (measured on the small preset's shapes at M = 512 and 1024).
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
    pub(crate) fn widen_into(&self, start: usize, dst: &mut [f32]) {
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
pub(crate) fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return x86::avx512();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Run the AVX2 kernels (and no bf16 product kernel) on an AVX-512 machine while `on` (tests: results are the
/// same either way).
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) fn force_avx2(on: bool) {
    x86::FORCE_AVX2.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Apply `act` to columns `[c0, c0 + width)` of every row of `out` (`m × n`), while they are in cache.
///
/// # Safety
/// `out` points to `m·n` f32, and no other thread touches these columns.
pub(crate) unsafe fn panel_activation(
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

mod laid_out;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub(crate) use laid_out::*;

/// An output pointer handed to rayon tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);

impl SendPtr {
    /// The pointer (a method, so closures capture the `Send` wrapper, not the raw field).
    pub(crate) fn get(self) -> *mut f32 {
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
