//! AVX-512 products of one attention tile (`attention::tile`) for head widths that are multiples of 16 (Gato's
//! 32): the scores `S = scale · Q · Kᵀ` against the keys transposed into 16-key strips, and `E · V` straight from
//! the row-major values — register tiles of up to 12 rows × 32 columns, as `small_m`'s, on the calling thread
//! (the tiles are the parallel work items). The `gemm` crate packed both operands on every call: for an
//! observation's 40 queries against ~500 keys, its packing and dispatch cost more than the 32-long products.

use std::arch::x86_64::*;

/// Columns per vector (and keys per strip).
const LANES: usize = 16;

/// Whether these kernels run here for key width `dk` and value width `dv`.
pub(crate) fn available(dk: usize, dv: usize) -> bool {
    crate::matmul::small_m::avx512()
        && dk.is_multiple_of(LANES)
        && dv.is_multiple_of(LANES)
        && dk > 0
}

/// Keys `k` (`[kmax, dk]`, row-major) into `kt` as strips of 16 keys: strip `t` is `[dk, 16]` at `t·dk·16`
/// (key `16t + l`, dimension `d` at `(t·dk + d)·16 + l`), zero past `kmax`. `kt` holds `⌈kmax/16⌉·16·dk`.
///
/// # Safety
/// AVX-512F is available ([`available`]); `k` holds `kmax·dk` values.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn transpose_keys(k: &[f32], kmax: usize, dk: usize, kt: &mut [f32]) {
    debug_assert!(k.len() >= kmax * dk && kt.len() >= kmax.div_ceil(LANES) * LANES * dk);
    let idx = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32(dk as i32),
    );
    for t in 0..kmax.div_ceil(LANES) {
        let valid = (kmax - t * LANES).min(LANES);
        let mask: __mmask16 = if valid == LANES {
            0xFFFF
        } else {
            (1u16 << valid) - 1
        };
        let base = k.as_ptr().wrapping_add(t * LANES * dk);
        for d in 0..dk {
            // Masked-off lanes (keys past kmax) read nothing.
            let col = _mm512_mask_i32gather_ps::<4>(
                _mm512_setzero_ps(),
                mask,
                idx,
                base.wrapping_add(d).cast(),
            );
            _mm512_storeu_ps(kt.as_mut_ptr().add((t * dk + d) * LANES), col);
        }
    }
}

/// Operands of `out[r·ldo + c] = alpha · Σ_j x[r·ldx + j] · W(j, c)` for `r < m`, `j < k`, `c < n` (`n` a multiple
/// of 16), with `W(j, c) = w[(c/16)·vstep + j·kstride + c%16]`: strips (`vstep = k·16`, `kstride = 16`) or a
/// row-major matrix (`vstep = 16`, `kstride = n`).
pub(crate) struct Product<'a> {
    pub out: &'a mut [f32],
    pub ldo: usize,
    pub x: &'a [f32],
    pub ldx: usize,
    pub w: &'a [f32],
    pub vstep: usize,
    pub kstride: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub alpha: f32,
}

impl Product<'_> {
    /// Run it: 32 columns at a time (16 for an odd last one), rows in balanced blocks of at most 12.
    ///
    /// # Safety
    /// AVX-512F is available; every index above lies inside its slice.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn run(&mut self) {
        if self.m == 0 || self.n == 0 || self.k == 0 {
            return;
        }
        // The bounds every tile relies on (cheap, once per call).
        assert!(self.n.is_multiple_of(LANES));
        assert!(self.out.len() >= (self.m - 1) * self.ldo + self.n);
        assert!(self.x.len() >= (self.m - 1) * self.ldx + self.k);
        assert!(
            self.w.len() >= (self.n / LANES - 1) * self.vstep + (self.k - 1) * self.kstride + LANES
        );
        let count = self.n / LANES;
        let blocks = self.m.div_ceil(12);
        let mut v = 0;
        while v < count {
            let two = v + 1 < count;
            let mut r = 0;
            for b in 0..blocks {
                let rows = (self.m - r).div_ceil(blocks - b);
                macro_rules! go {
                    ($($mr:literal)*) => {
                        match (rows, two) {
                            $(
                                ($mr, true) => self.tile::<$mr, 2>(r, v),
                                ($mr, false) => self.tile::<$mr, 1>(r, v),
                            )*
                            _ => unreachable!("row blocks hold 1 to 12 rows"),
                        }
                    };
                }
                go!(1 2 3 4 5 6 7 8 9 10 11 12);
                r += rows;
            }
            v += if two { 2 } else { 1 };
        }
    }

    /// Rows `r0..r0 + MR` × column blocks `v0..v0 + NV`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const MR: usize, const NV: usize>(&mut self, r0: usize, v0: usize) {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let (x, w) = (self.x.as_ptr().add(r0 * self.ldx), self.w.as_ptr());
        for j in 0..self.k {
            let mut wv = [_mm512_setzero_ps(); NV];
            for (i, c) in wv.iter_mut().enumerate() {
                *c = _mm512_loadu_ps(w.add((v0 + i) * self.vstep + j * self.kstride));
            }
            for (r, a) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(*x.add(r * self.ldx + j));
                for (av, &c) in a.iter_mut().zip(&wv) {
                    *av = _mm512_fmadd_ps(xv, c, *av);
                }
            }
        }
        let al = _mm512_set1_ps(self.alpha);
        for (r, a) in acc.iter().enumerate() {
            for (i, &av) in a.iter().enumerate() {
                let at = (r0 + r) * self.ldo + (v0 + i) * LANES;
                _mm512_storeu_ps(self.out.as_mut_ptr().add(at), _mm512_mul_ps(av, al));
            }
        }
    }
}
