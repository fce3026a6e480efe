//! The x86 tiles of the few-row products: AVX-512 (up to 12 rows × 32 columns) and AVX2+FMA (up to 6 × 16)
//! register tiles, vector packing of f32/f16/bf16 weights into strips, and prefetching of the next panel.

use std::arch::x86_64::*;

use super::{NextPanel, Prefetch, Weights, PREFETCH_ROWS, STRIP};

/// Whether the AVX2+FMA tile can run here.
pub(crate) fn available() -> bool {
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
pub(crate) unsafe fn pack(
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
pub(crate) trait Lane: Copy {
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
pub(crate) unsafe fn panel512<T: Lane>(
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
pub(crate) static FORCE_AVX2: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Whether the AVX-512 kernels can run here and were not switched off with the environment variable
/// `GATO_NO_AVX512` (set, any value), which measures the AVX2 kernels on an AVX-512 machine.
pub(crate) fn avx512() -> bool {
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
pub(crate) unsafe fn strips512<T: Lane>(
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
pub(crate) unsafe fn strip(
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
