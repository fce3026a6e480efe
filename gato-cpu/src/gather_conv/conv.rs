//! 2-D convolution on the CPU as im2col + GEMM (the ResNet patch embedding, App. C.2).

use gato_core::backend::MatmulSpec;
use gato_core::ops::{Conv2dDims, MatmulDims};
use gato_core::shape::Shape;
use rayon::prelude::*;

/// Unfold one image `[C, H, W]` into columns `[C·kh·kw, OH·OW]` (zero padding).
fn im2col(x: &[f32], d: &Conv2dDims) -> Vec<f32> {
    let p = d.oh * d.ow;
    let mut cols = vec![0.0f32; d.c * d.kh * d.kw * p];
    for c in 0..d.c {
        for ky in 0..d.kh {
            for kx in 0..d.kw {
                let row = (c * d.kh + ky) * d.kw + kx;
                let dst = &mut cols[row * p..(row + 1) * p];
                for oy in 0..d.oh {
                    let y = (oy * d.stride + ky) as isize - d.pad as isize;
                    if y < 0 || y >= d.h as isize {
                        continue;
                    }
                    for ox in 0..d.ow {
                        let xx = (ox * d.stride + kx) as isize - d.pad as isize;
                        if xx < 0 || xx >= d.w as isize {
                            continue;
                        }
                        dst[oy * d.ow + ox] = x[(c * d.h + y as usize) * d.w + xx as usize];
                    }
                }
            }
        }
    }
    cols
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
    let mm = MatmulDims {
        batch: 1,
        m: d.o,
        n: p,
        k: ck,
        b_batched: false,
        out: Shape::new([d.o, p]),
    };
    let img_len = d.c * d.h * d.w;
    if d.o * p == 0 {
        return;
    }
    for (i, y) in out.chunks_mut(d.o * p).enumerate().take(d.n) {
        let cols = im2col(&x[i * img_len..(i + 1) * img_len], d);
        crate::matmul::gemm::matmul(
            w,
            crate::matmul::small_m::Weights::F32(&cols),
            &mm,
            &MatmulSpec::default(),
            threads,
            None,
            None,
            y,
        );
        if let Some(b) = bias {
            for (row, &bo) in y.chunks_mut(p).zip(b) {
                row.iter_mut().for_each(|v| *v += bo);
            }
        }
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

/// Conv2d backward as direct loops (readable first; the patch embedding's convolutions are 16 × 16 images):
/// `dw` with output channels as the parallel work items, `dx` with images, `db` the sums of `dy` per channel.
pub(crate) fn conv2d_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    d: &Conv2dDims,
    (dx, dw, db): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let (s, p) = (d.stride, d.pad as isize);
    let (ohw, chw, ckk) = (d.oh * d.ow, d.c * d.h * d.w, d.c * d.kh * d.kw);
    // The input pixel under output (oy, ox) and kernel tap (ky, kx), if inside the image.
    let tap = move |oy: usize, ox: usize, ky: usize, kx: usize| -> Option<usize> {
        let iy = (oy * s + ky) as isize - p;
        let ix = (ox * s + kx) as isize - p;
        (iy >= 0 && ix >= 0 && (iy as usize) < d.h && (ix as usize) < d.w)
            .then(|| iy as usize * d.w + ix as usize)
    };
    if ckk > 0 {
        dw.par_chunks_mut(ckk).enumerate().for_each(|(oc, dwo)| {
            for b in 0..d.n {
                let g = &dy[(b * d.o + oc) * ohw..(b * d.o + oc + 1) * ohw];
                let xb = &x[b * chw..(b + 1) * chw];
                for ic in 0..d.c {
                    for ky in 0..d.kh {
                        for kx in 0..d.kw {
                            let mut acc = 0f32;
                            for oy in 0..d.oh {
                                for ox in 0..d.ow {
                                    if let Some(px) = tap(oy, ox, ky, kx) {
                                        acc += g[oy * d.ow + ox] * xb[ic * d.h * d.w + px];
                                    }
                                }
                            }
                            dwo[(ic * d.kh + ky) * d.kw + kx] += acc;
                        }
                    }
                }
            }
        });
    }
    if chw > 0 {
        dx.par_chunks_mut(chw).enumerate().for_each(|(b, dxb)| {
            for oc in 0..d.o {
                let g = &dy[(b * d.o + oc) * ohw..(b * d.o + oc + 1) * ohw];
                let wo = &w[oc * ckk..(oc + 1) * ckk];
                for ic in 0..d.c {
                    for ky in 0..d.kh {
                        for kx in 0..d.kw {
                            let wv = wo[(ic * d.kh + ky) * d.kw + kx];
                            for oy in 0..d.oh {
                                for ox in 0..d.ow {
                                    if let Some(px) = tap(oy, ox, ky, kx) {
                                        dxb[ic * d.h * d.w + px] += g[oy * d.ow + ox] * wv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        });
    }
    db.par_iter_mut().enumerate().for_each(|(oc, o)| {
        *o = (0..d.n)
            .map(|b| {
                dy[(b * d.o + oc) * ohw..(b * d.o + oc + 1) * ohw]
                    .iter()
                    .map(|&v| v as f64)
                    .sum::<f64>()
            })
            .sum::<f64>() as f32;
    });
}
