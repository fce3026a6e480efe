//! 2-D convolution on the CPU as im2col + GEMM (the ResNet patch embedding, App. C.2).

use gato_core::backend::MatmulSpec;
use gato_core::ops::{Conv2dDims, MatmulDims};
use gato_core::shape::Shape;
use rayon::prelude::*;

/// The output columns `ox` whose input column `ox·stride + kx − pad` lies inside `[0, w)`: a range, so the copy
/// between an image row and a column row is a slice operation rather than a bounds test per pixel.
fn valid_ox(d: &Conv2dDims, kx: usize) -> std::ops::Range<usize> {
    let (s, pad) = (d.stride.max(1) as isize, d.pad as isize);
    let lo = (pad - kx as isize).max(0);
    let lo = ((lo + s - 1) / s) as usize;
    // ox·s + kx − pad ≤ w − 1  ⇔  ox ≤ (w − 1 − kx + pad) / s
    let top = d.w as isize - 1 - kx as isize + pad;
    let hi = if top < 0 { 0 } else { (top / s + 1) as usize };
    lo.min(d.ow)..hi.min(d.ow).max(lo.min(d.ow))
}

/// Unfold one image `[C, H, W]` into columns `[C·kh·kw, OH·OW]` (zero padding), written at `at` within rows of
/// `row_len` values of `cols` (so a chunk of images can share one column matrix).
fn im2col_into(x: &[f32], d: &Conv2dDims, cols: &mut [f32], row_len: usize, at: usize) {
    let p = d.oh * d.ow;
    for c in 0..d.c {
        for ky in 0..d.kh {
            for kx in 0..d.kw {
                let row = (c * d.kh + ky) * d.kw + kx;
                let dst = &mut cols[row * row_len + at..row * row_len + at + p];
                let xs = valid_ox(d, kx);
                for oy in 0..d.oh {
                    let y = (oy * d.stride + ky) as isize - d.pad as isize;
                    if y < 0 || y >= d.h as isize || xs.is_empty() {
                        continue;
                    }
                    let src = &x[(c * d.h + y as usize) * d.w..(c * d.h + y as usize + 1) * d.w];
                    let out = &mut dst[oy * d.ow..(oy + 1) * d.ow];
                    let x0 = xs.start * d.stride + kx - d.pad;
                    if d.stride == 1 {
                        out[xs.clone()].copy_from_slice(&src[x0..x0 + xs.len()]);
                    } else {
                        for (k, ox) in xs.clone().enumerate() {
                            out[ox] = src[x0 + k * d.stride];
                        }
                    }
                }
            }
        }
    }
}

/// Values of unfolded columns per chunk of images (16 MiB of f32), forward and backward: the chunk's GEMMs are
/// long enough to run near the GEMM ceiling (one GEMM per 16×16 patch would be a few thousand multiply-adds), and
/// the buffers stay in the last-level cache's neighbourhood.
const CHUNK_VALUES: usize = 1 << 22;

/// Images per chunk: as many as keep the larger of the column matrix and the output `[O, cnt·P]` within
/// [`CHUNK_VALUES`], at least one.
fn images_per_chunk(d: &Conv2dDims) -> usize {
    let per_image = (d.c * d.kh * d.kw).max(d.o) * d.oh * d.ow;
    (CHUNK_VALUES / per_image.max(1)).clamp(1, d.n.max(1))
}

/// The column matrix `[C·kh·kw, cnt·P]` of images `first .. first + cnt` of `x`, image `j` in columns
/// `j·P .. (j+1)·P`.
fn chunk_columns(x: &[f32], d: &Conv2dDims, first: usize, cnt: usize) -> Vec<f32> {
    let (p, img_len) = (d.oh * d.ow, d.c * d.h * d.w);
    let np = cnt * p;
    let mut cols = vec![0.0f32; d.c * d.kh * d.kw * np];
    for j in 0..cnt {
        let b = first + j;
        im2col_into(&x[b * img_len..(b + 1) * img_len], d, &mut cols, np, j * p);
    }
    cols
}

/// `out [m, n] = op(a) · op(b)` with inner dimension `k`, on the backend's GEMM.
fn gemm(
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    spec: MatmulSpec,
    threads: usize,
    out: &mut [f32],
) {
    let dims = MatmulDims {
        batch: 1,
        m,
        n,
        k,
        b_batched: false,
        out: Shape::new([m, n]),
    };
    let b = crate::matmul::small_m::Weights::F32(b);
    crate::matmul::gemm::matmul(a, b, &dims, &spec, threads, None, None, out);
}

pub(crate) fn conv2d(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    d: &Conv2dDims,
    threads: usize,
    out: &mut [f32],
) {
    let p = d.oh * d.ow;
    let ck = d.c * d.kh * d.kw;
    if d.o * p == 0 || d.n == 0 {
        return;
    }
    // Images in chunks: one column matrix [C·kh·kw, cnt·P] and one GEMM per chunk.
    let chunk = images_per_chunk(d);
    for first in (0..d.n).step_by(chunk) {
        let cnt = chunk.min(d.n - first);
        let np = cnt * p;
        let cols = chunk_columns(x, d, first, cnt);
        let mut y = vec![0.0f32; d.o * np];
        gemm(
            w,
            &cols,
            (d.o, np, ck),
            MatmulSpec::default(),
            threads,
            &mut y,
        );
        // [O, cnt·P] → images [cnt, O, P], plus the bias.
        out[first * d.o * p..(first + cnt) * d.o * p]
            .par_chunks_mut(d.o * p)
            .enumerate()
            .for_each(|(j, img)| {
                for (oc, row) in img.chunks_mut(p).enumerate() {
                    row.copy_from_slice(&y[oc * np + j * p..oc * np + (j + 1) * p]);
                    if let Some(b) = bias {
                        row.iter_mut().for_each(|v| *v += b[oc]);
                    }
                }
            });
    }
}

/// The embedding gather's backward: each row of `dy` (`[n, d]`) added into row `ids[i]` of `out` (`[V, d]`, zeroed);
/// [`gato_core::ops::PAD_ID`] rows skipped. Columns in parallel blocks, so repeated ids never race.
pub(crate) fn scatter_add_rows(ids: &[u32], dy: &[f32], d: usize, out: &mut [f32]) {
    const COLS: usize = 64;
    if d == 0 {
        return;
    }
    let blocks = d.div_ceil(COLS);
    let out_ptr = crate::matmul::small_m::SendPtr(out.as_mut_ptr());
    (0..blocks).into_par_iter().for_each(|b| {
        let (c0, c1) = (b * COLS, (b * COLS + COLS).min(d));
        for (i, &id) in ids.iter().enumerate() {
            if id == gato_core::ops::PAD_ID {
                continue;
            }
            let src = &dy[i * d + c0..i * d + c1];
            // SAFETY: block `b` writes columns [c0, c1) only, and no other block does; `id` < V was checked.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(out_ptr.get().add(id as usize * d + c0), c1 - c0)
            };
            for (o, &g) in dst.iter_mut().zip(src) {
                *o += g;
            }
        }
    });
}

/// The convolution's backward (`docs/design.md` §8) as GEMMs over chunks of images, im2col's transpose: with the
/// chunk's columns `cols [C·kh·kw, cnt·P]` and output gradients `dY [O, cnt·P]`, `dW += dY · colsᵀ`,
/// `dcols = Wᵀ · dY` folded back onto the input (col2im), and `db` the sum of `dY` (in f64).
pub(crate) fn conv2d_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    d: &Conv2dDims,
    threads: usize,
    (dx, dw, db): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let (p, chw, ckk) = (d.oh * d.ow, d.c * d.h * d.w, d.c * d.kh * d.kw);
    db.par_iter_mut().enumerate().for_each(|(oc, o)| {
        *o = (0..d.n)
            .map(|b| {
                dy[(b * d.o + oc) * p..(b * d.o + oc + 1) * p]
                    .iter()
                    .map(|&v| v as f64)
                    .sum::<f64>()
            })
            .sum::<f64>() as f32;
    });
    if p == 0 || ckk == 0 || d.o == 0 || d.n == 0 {
        return;
    }
    let chunk = images_per_chunk(d);
    let mut dw_part = vec![0.0f32; d.o * ckk];
    for first in (0..d.n).step_by(chunk) {
        let cnt = chunk.min(d.n - first);
        let np = cnt * p;
        // The chunk's columns and output gradients, image j in columns j·P .. (j+1)·P.
        let cols = chunk_columns(x, d, first, cnt);
        let mut dyc = vec![0.0f32; d.o * np];
        for j in 0..cnt {
            let b = first + j;
            for oc in 0..d.o {
                dyc[oc * np + j * p..oc * np + (j + 1) * p]
                    .copy_from_slice(&dy[(b * d.o + oc) * p..(b * d.o + oc + 1) * p]);
            }
        }
        // dW [O, CKK] += dY [O, cnt·P] · colsᵀ (cols is [CKK, cnt·P]).
        let trans_b = MatmulSpec {
            trans_b: true,
            ..MatmulSpec::default()
        };
        gemm(&dyc, &cols, (d.o, ckk, np), trans_b, threads, &mut dw_part);
        dw.iter_mut().zip(&dw_part).for_each(|(a, b)| *a += b);
        // dcols [CKK, cnt·P] = Wᵀ · dY (W is [O, CKK]).
        let trans_a = MatmulSpec {
            trans_a: true,
            ..MatmulSpec::default()
        };
        let mut dcols = cols; // reuse the allocation: every value is overwritten
        gemm(w, &dyc, (ckk, np, d.o), trans_a, threads, &mut dcols);
        // col2im: each image's columns added back onto its pixels (images in parallel: disjoint outputs).
        dx[first * chw..(first + cnt) * chw]
            .par_chunks_mut(chw)
            .enumerate()
            .for_each(|(j, dxb)| col2im_add(&dcols, np, j * p, d, dxb));
    }
}

/// Add image `j`'s columns of `dcols` (`[C·kh·kw, row_len]`, the image at column offset `at`) onto its pixels
/// `dxb` (`[C, H, W]`): the transpose of [`im2col_into`].
fn col2im_add(dcols: &[f32], row_len: usize, at: usize, d: &Conv2dDims, dxb: &mut [f32]) {
    for c in 0..d.c {
        for ky in 0..d.kh {
            for kx in 0..d.kw {
                let row = (c * d.kh + ky) * d.kw + kx;
                let src = &dcols[row * row_len + at..row * row_len + at + d.oh * d.ow];
                let xs = valid_ox(d, kx);
                if xs.is_empty() {
                    continue;
                }
                let x0 = xs.start * d.stride + kx - d.pad;
                for oy in 0..d.oh {
                    let y = (oy * d.stride + ky) as isize - d.pad as isize;
                    if y < 0 || y >= d.h as isize {
                        continue;
                    }
                    let dst =
                        &mut dxb[(c * d.h + y as usize) * d.w..(c * d.h + y as usize + 1) * d.w];
                    let g = &src[oy * d.ow..(oy + 1) * d.ow];
                    if d.stride == 1 {
                        for (a, b) in dst[x0..x0 + xs.len()].iter_mut().zip(&g[xs.clone()]) {
                            *a += b;
                        }
                    } else {
                        for (k, ox) in xs.clone().enumerate() {
                            dst[x0 + k * d.stride] += g[ox];
                        }
                    }
                }
            }
        }
    }
}
