//! bf16 × bf16 products with f32 accumulation, for bf16 weights laid out for [`gato_core::MatmulPrecision::Bf16`]
//! ([`gato_core::MatmulOps::pack_weight`]) on a CPU with AVX512_BF16: the activations are rounded to bf16 (nearest even)
//! and `vdpbf16ps` multiplies 32 bf16 pairs into 16 f32 sums per instruction, twice the multiply-adds per cycle
//! of an f32 FMA. Each product of two bf16 values is exact
//! in f32, so the only new error is the activations' rounding (relative 2⁻⁹ per value), the precision a bf16
//! matrix unit (TPU, tensor core) computes at.
//!
//! Layout ([`PairStrips`]): like `small_m`'s strips, 16 columns each, but two consecutive rows `2p`, `2p + 1` of
//! the weight share one 32-bit word per column (row `2p` in the low half), the operand order `vdpbf16ps` reads —
//! a strip's pair row is one 64-byte cache line, and a strip is read front to back. An activation row is rounded
//! to bf16 once per product into the same pairs (K padded to even with a zero).
//!
//! Work is split as in `small_m`: each thread takes a run of 64-column panels; within a panel, two strips at a
//! time, rows in balanced blocks of at most 12 (24 accumulators in the 32 AVX-512 registers).

use half::bf16;
use rayon::prelude::*;

use crate::elementwise::kernels::unary_slice;
use crate::matmul::small_m::{self, panel_activation, SendPtr, Weights};
use crate::scratch::{grown, with_scratch};
use gato_core::backend::UnaryOp;

/// Columns of one strip (one 512-bit vector of f32 sums).
const STRIP: usize = 16;

/// Columns per panel (four strips): the unit threads divide.
const PANEL: usize = 64;

/// Words per cache line.
const LINE_WORDS: usize = 16;

/// Whether the bf16 product kernel runs on this machine: AVX-512F and AVX512_BF16, and the AVX-512 kernels not
/// switched off with `GATO_NO_AVX512`.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static ON: OnceLock<bool> = OnceLock::new();
        small_m::avx512() && *ON.get_or_init(|| is_x86_feature_detected!("avx512bf16"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A weight `[K, N]` rounded to bf16 (exact for a bf16 weight) in 16-column strips of row pairs: strip `s`
/// (columns `[16s, 16s + 16)`) holds `⌈K/2⌉` lines of 16 words; word `(p, j)` is `w[2p, 16s + j]` in its low 16
/// bits and `w[2p + 1, 16s + j]` in its high 16 bits, zero beyond `K` or `N`. Strips start on a cache line.
#[derive(Debug)]
pub(crate) struct PairStrips {
    words: Vec<u32>,
    skew: usize,
    k: usize,
    n: usize,
}

impl PairStrips {
    /// Lay `w` (`[K, N]`, row-major) out as pair strips, rounding f32/f16 values to bf16.
    pub(crate) fn new(w: Weights<'_>, k: usize, n: usize) -> Self {
        let pairs = k.div_ceil(2);
        let strips = n.div_ceil(STRIP);
        let mut words = vec![0u32; strips * pairs * LINE_WORDS + LINE_WORDS];
        let skew = words.as_ptr().align_offset(64).min(LINE_WORDS);
        // K = 0: no pair rows (`max(1)`: no chunks to cut).
        words[skew..skew + strips * pairs * LINE_WORDS]
            .par_chunks_mut((pairs * LINE_WORDS).max(1))
            .enumerate()
            .for_each(|(s, strip)| {
                let c0 = s * STRIP;
                let cols = STRIP.min(n - c0);
                let (mut lo, mut hi) = ([0.0f32; STRIP], [0.0f32; STRIP]);
                for (p, line) in strip.chunks_exact_mut(LINE_WORDS).enumerate() {
                    w.widen_into(2 * p * n + c0, &mut lo[..cols]);
                    if 2 * p + 1 < k {
                        w.widen_into((2 * p + 1) * n + c0, &mut hi[..cols]);
                    } else {
                        hi = [0.0; STRIP];
                    }
                    for j in 0..cols {
                        line[j] = round_bits(lo[j]) | round_bits(hi[j]) << 16;
                    }
                }
            });
        PairStrips { words, skew, k, n }
    }

    /// Bytes held.
    pub(crate) fn size_in_bytes(&self) -> usize {
        self.words.len() * 4
    }

    /// Pair rows per strip.
    fn pairs(&self) -> usize {
        self.k.div_ceil(2)
    }

    /// Every strip, from the first cache line.
    fn lines(&self) -> &[u32] {
        let len = self.n.div_ceil(STRIP) * self.pairs() * LINE_WORDS;
        &self.words[self.skew..self.skew + len]
    }
}

thread_local! {
    /// Per thread, the activation rows rounded to bf16 pairs (kept, so acting allocates nothing).
    static ROUNDED: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `out[M, N] = act(alpha · bf16(x)[M, K] · w[K, N] + bias[N])` (bias and activation optional; `out` is
/// overwritten). On a machine without the bf16 kernel ([`available`]) a portable loop computes the same sums.
pub(crate) fn matmul(
    out: &mut [f32],
    x: &[f32],
    w: &PairStrips,
    m: usize,
    alpha: f32,
    bias: Option<&[f32]>,
    act: Option<UnaryOp>,
) {
    let (k, n) = (w.k, w.n);
    debug_assert_eq!(out.len(), m * n);
    debug_assert_eq!(x.len(), m * k);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // No terms: every row is the bias (then the activation).
        for row in out.chunks_mut(n) {
            match bias {
                Some(b) => row.copy_from_slice(b),
                None => row.fill(0.0),
            }
            if let Some(op) = act {
                unary_slice(op, row);
            }
        }
        return;
    }
    let pairs = w.pairs();
    let mut run = |xq: &mut [u32]| {
        round_rows(x, m, k, xq);
        let xq: &[u32] = xq;
        let out_ptr = SendPtr(out.as_mut_ptr());
        let panels = n.div_ceil(PANEL);
        let groups = rayon::current_num_threads().clamp(1, panels);
        let per = panels.div_ceil(groups);
        (0..groups).into_par_iter().for_each(|g| {
            for p in g * per..((g + 1) * per).min(panels) {
                let c0 = p * PANEL;
                let width = PANEL.min(n - c0);
                // SAFETY: this task alone writes columns [c0, c0 + width) of `out` (M × N); `xq` holds M rows of
                // `pairs` words and `w` the strips of every column.
                unsafe {
                    panel(out_ptr.get(), xq, w, m, c0, width, alpha, bias);
                    panel_activation(out_ptr.get(), m, n, c0, width, act);
                }
            }
        });
    };
    // A decoded token's rounded row lives on the stack: no per-thread buffer that a step landing on a fresh
    // worker would have to grow.
    if m * pairs <= STACK_WORDS {
        let mut stack = [0u32; STACK_WORDS];
        run(&mut stack[..m * pairs]);
    } else {
        with_scratch(&ROUNDED, |buf| run(grown(buf, m * pairs)));
    }
}

/// Rounded activation words kept on the stack (16 KiB: one row of K ≤ 8192).
const STACK_WORDS: usize = 4096;

/// The bf16 bits of `v` rounded to nearest even (NaN stays NaN).
fn round_bits(v: f32) -> u32 {
    u32::from(bf16::from_f32(v).to_bits())
}

/// `xq[r, p]` = the pair `(bf16(x[r, 2p]), bf16(x[r, 2p + 1]))`, zero beyond `K`.
fn round_rows(x: &[f32], m: usize, k: usize, xq: &mut [u32]) {
    let pairs = k.div_ceil(2);
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the features are present; `x` holds m·k values and `xq` m·pairs words.
        unsafe { x86::round_rows(x, m, k, xq) };
        return;
    }
    for (row, dst) in x.chunks_exact(k).zip(xq.chunks_exact_mut(pairs)) {
        for (p, d) in dst.iter_mut().enumerate() {
            let hi = row.get(2 * p + 1).map_or(0, |&v| round_bits(v));
            *d = round_bits(row[2 * p]) | hi << 16;
        }
    }
}

/// Every row of the product for the panel of columns `[c0, c0 + width)`.
///
/// # Safety
/// `out` points to `m·n` f32 and no other thread writes these columns; `xq` holds `m` rows of pairs.
#[allow(clippy::too_many_arguments)]
unsafe fn panel(
    out: *mut f32,
    xq: &[u32],
    w: &PairStrips,
    m: usize,
    c0: usize,
    width: usize,
    alpha: f32,
    bias: Option<&[f32]>,
) {
    let pairs = w.pairs();
    let lines = w.lines();
    #[cfg(target_arch = "x86_64")]
    if available() {
        x86::panel(out, xq, lines, pairs, m, w.n, c0, width, alpha, bias);
        return;
    }
    let low = |b: u32| f32::from_bits(b << 16);
    let high = |b: u32| f32::from_bits(b & 0xFFFF_0000);
    for c in c0..c0 + width {
        let strip = &lines[(c / STRIP) * pairs * LINE_WORDS..];
        for r in 0..m {
            let xr = &xq[r * pairs..(r + 1) * pairs];
            let mut acc = 0.0f32;
            for (p, &xp) in xr.iter().enumerate() {
                let wp = strip[p * LINE_WORDS + c % STRIP];
                acc += low(xp) * low(wp) + high(xp) * high(wp);
            }
            let b = bias.map_or(0.0, |b| b[c]);
            // SAFETY: r < m, c < n.
            *out.add(r * w.n + c) = alpha.mul_add(acc, b);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{LINE_WORDS, STRIP};

    /// Mask of the first `n` (≤ 16) lanes.
    #[inline(always)]
    fn lanes(n: usize) -> __mmask16 {
        if n >= 16 {
            0xFFFF
        } else {
            (1u16 << n) - 1
        }
    }

    /// Round every row of `x` (`m × k`) to bf16 pairs, 32 values per conversion.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(crate) unsafe fn round_rows(x: &[f32], m: usize, k: usize, xq: &mut [u32]) {
        let pairs = k.div_ceil(2);
        for r in 0..m {
            let src = x.as_ptr().add(r * k);
            let dst = xq.as_mut_ptr().add(r * pairs);
            let mut j = 0;
            while j < k {
                // Masked lanes read nothing (no fault past the row) and convert zeros.
                let lo = _mm512_maskz_loadu_ps(lanes(k - j), src.wrapping_add(j));
                let hi = _mm512_maskz_loadu_ps(
                    lanes(k.saturating_sub(j + 16)),
                    src.wrapping_add(j + 16),
                );
                let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_mask_storeu_epi32(dst.add(j / 2).cast(), lanes(pairs - j / 2), v);
                j += 32;
            }
        }
    }

    /// Every row for the panel's strips, two at a time, rows in balanced blocks of at most 12.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn panel(
        out: *mut f32,
        xq: &[u32],
        lines: &[u32],
        pairs: usize,
        m: usize,
        n: usize,
        c0: usize,
        width: usize,
        alpha: f32,
        bias: Option<&[f32]>,
    ) {
        let count = width.div_ceil(STRIP);
        let blocks = m.div_ceil(12);
        let mut s = 0;
        while s < count {
            let two = s + 1 < count;
            let col = c0 + s * STRIP;
            // Columns the last strip of this step writes.
            let last = (width - s * STRIP - if two { STRIP } else { 0 }).min(STRIP);
            let strip = lines.as_ptr().add((col / STRIP) * pairs * LINE_WORDS);
            // The next two strips (the rest of this panel, or the next panel of this thread's run — strips are
            // consecutive in memory) are fetched while these compute. With several row blocks, the first reads
            // these strips from memory and the others from cache: the others fetch into L1. With one block (M ≤ 12:
            // a decoded token) it fetches into L2, which keeps the memory stream going where fetching into L1
            // evicts what the current strips still need (measured both ways; see `docs/benchmarks.md`).
            let ahead =
                (lines.len() / (pairs * LINE_WORDS)).saturating_sub(col / STRIP + count_step(two));
            let pf_lines = ahead.min(2) * pairs;
            let pf_base = strip
                .wrapping_add(count_step(two) * pairs * LINE_WORDS)
                .cast::<u8>();
            // Lines before block b's share: blocks 1..B split them (one block: all of them).
            let share = |b: usize| match blocks {
                1 => b * pf_lines,
                _ => (b.max(1) - 1) * pf_lines / (blocks - 1),
            };
            let mut r = 0;
            for b in 0..blocks {
                let rows = (m - r).div_ceil(blocks - b);
                let t = Tile {
                    out,
                    xq: xq.as_ptr(),
                    strip,
                    pairs,
                    n,
                    r0: r,
                    col,
                    last: lanes(last),
                    alpha,
                    bias,
                    pf: pf_base.wrapping_add(share(b) * 64),
                    pf_lines: share(b + 1) - share(b),
                    to_l2: blocks == 1,
                };
                macro_rules! go {
                    ($($mr:literal)*) => {
                        match (rows, two) {
                            $(
                                ($mr, true) => t.run::<$mr, 2>(),
                                ($mr, false) => t.run::<$mr, 1>(),
                            )*
                            _ => unreachable!("row blocks hold 1 to 12 rows"),
                        }
                    };
                }
                go!(1 2 3 4 5 6 7 8 9 10 11 12);
                r += rows;
            }
            s += if two { 2 } else { 1 };
        }
    }

    /// One register tile: `MR` rows from `r0` × `NV` strips from `col`.
    struct Tile<'a> {
        out: *mut f32,
        xq: *const u32,
        strip: *const u32,
        pairs: usize,
        n: usize,
        r0: usize,
        col: usize,
        /// Lanes of the last strip inside the output.
        last: __mmask16,
        alpha: f32,
        bias: Option<&'a [f32]>,
        /// Cache lines from `pf` to prefetch, spread over the tile's loop.
        pf: *const u8,
        pf_lines: usize,
        /// Prefetch into L2 rather than L1.
        to_l2: bool,
    }

    /// Strips one step of [`panel`] computes.
    fn count_step(two: bool) -> usize {
        if two {
            2
        } else {
            1
        }
    }

    impl Tile<'_> {
        #[inline]
        #[target_feature(enable = "avx512f,avx512bf16")]
        unsafe fn run<const MR: usize, const NV: usize>(&self) {
            let mut acc = [[_mm512_setzero_ps(); NV]; MR];
            let xr = self.xq.add(self.r0 * self.pairs);
            let step = self.pairs * LINE_WORDS;
            // Bresenham: `pf_lines` prefetches evenly over `pairs` iterations.
            let (mut due, mut line) = (0, self.pf);
            for p in 0..self.pairs {
                due += self.pf_lines;
                while due >= self.pairs {
                    due -= self.pairs;
                    // SAFETY (of later reads): a prefetch is a hint and never faults.
                    if self.to_l2 {
                        _mm_prefetch::<_MM_HINT_T1>(line.cast());
                    } else {
                        _mm_prefetch::<_MM_HINT_T0>(line.cast());
                    }
                    line = line.wrapping_add(64);
                }
                let mut w = [_mm512_setzero_si512(); NV];
                for (v, wv) in w.iter_mut().enumerate() {
                    *wv = _mm512_loadu_si512(self.strip.add(v * step + p * LINE_WORDS).cast());
                }
                for (r, a) in acc.iter_mut().enumerate() {
                    let xv: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*xr.add(r * self.pairs + p) as i32));
                    for (av, &wv) in a.iter_mut().zip(&w) {
                        *av =
                            _mm512_dpbf16_ps(*av, xv, std::mem::transmute::<__m512i, __m512bh>(wv));
                    }
                }
            }
            let al = _mm512_set1_ps(self.alpha);
            for (r, a) in acc.iter().enumerate() {
                for (v, &av) in a.iter().enumerate() {
                    let c = self.col + STRIP * v;
                    let mask = if v + 1 == NV { self.last } else { 0xFFFF };
                    let b = match self.bias {
                        Some(b) => _mm512_maskz_loadu_ps(mask, b.as_ptr().add(c)),
                        None => _mm512_setzero_ps(),
                    };
                    let y = _mm512_fmadd_ps(av, al, b);
                    _mm512_mask_storeu_ps(self.out.add((self.r0 + r) * self.n + c), mask, y);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_util::{on_both_kernel_widths, reference, vals};

    #[test]
    fn every_shape_matches_the_f64_sum_of_rounded_operands() {
        // The portable loop too, where the kernel runs (what a CPU without AVX512_BF16 would use, were such a
        // weight laid out there).
        let kernel = if available() {
            "vdpbf16ps kernel"
        } else {
            "portable loop"
        };
        on_both_kernel_widths(kernel, "portable loop", check_all_shapes);
    }

    fn check_all_shapes(kernel: &str) {
        for &(m, k, n) in &[
            (1, 37, 200),
            (2, 64, 48),
            (3, 5, 17),
            (13, 70, 130),
            (40, 96, 208),
            (23, 31, 96),
            (1, 1, 1),
            (3, 0, 17),
            (25, 768, 64),
        ] {
            let x = vals(m * k, 1);
            let w = vals(k * n, 2);
            let bias = vals(n, 3);
            let wb: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
            for (name, strips) in [
                ("f32", PairStrips::new(Weights::F32(&w), k, n)),
                ("bf16", PairStrips::new(Weights::BF16(&wb), k, n)),
            ] {
                for (alpha, b) in [(1.0, None), (0.5, Some(bias.as_slice()))] {
                    let mut out = vec![f32::NAN; m * n];
                    matmul(&mut out, &x, &strips, m, alpha, b, None);
                    // f64 sums of the bf16-rounded operands.
                    let round = |v: &[f32]| {
                        v.iter()
                            .map(|&v| bf16::from_f32(v).to_f64())
                            .collect::<Vec<_>>()
                    };
                    let want = reference(&round(&x), &round(&w), (m, k, n), alpha, b);
                    let err = out
                        .iter()
                        .zip(&want)
                        .map(|(&g, &r)| (g as f64 - r).abs())
                        .fold(0.0, f64::max);
                    assert!(
                        err <= 1e-6 * k as f64,
                        "{kernel}, {name} m={m} k={k} n={n} alpha={alpha}: error {err}"
                    );
                }
            }
        }
    }
}
