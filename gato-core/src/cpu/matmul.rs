//! Matrix products on the CPU through the `gemm` crate (cache-blocked, SIMD kernels chosen at run time, rayon
//! threads).

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use crate::backend::MatmulSpec;
use crate::ops::MatmulDims;

/// Below this many multiply-adds per product, threads cost more than they save.
const THREADING_THRESHOLD: usize = 48 * 48 * 48;

/// Row/column strides of `op(x)` for a row-major `[rows, cols]` buffer.
fn strides(trans: bool, stored_cols: usize) -> (isize, isize) {
    // (row stride, column stride) of the logical matrix.
    if trans {
        (1, stored_cols as isize)
    } else {
        (stored_cols as isize, 1)
    }
}

/// One product `out = alpha · op(a) · op(b)` into `out` (`[M, N]`, overwritten).
fn gemm_one(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    d: &MatmulDims,
    spec: &MatmulSpec,
    par: Parallelism,
) {
    let (m, n, k) = (d.m, d.n, d.k);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out.fill(0.0);
        return;
    }
    // a is stored [M, K] or, transposed, [K, M]; b is stored [K, N] or, transposed, [N, K].
    let (a_rs, a_cs) = strides(spec.trans_a, if spec.trans_a { m } else { k });
    let (b_rs, b_cs) = strides(spec.trans_b, if spec.trans_b { k } else { n });
    debug_assert_eq!(out.len(), m * n);
    debug_assert_eq!(a.len(), m * k);
    debug_assert_eq!(b.len(), k * n);
    // SAFETY: the three buffers hold exactly M·N, M·K and K·N elements (checked by `matmul_dims` and the slicing in
    // `matmul`), and the strides above address only inside them; `out` does not alias `a` or `b`.
    unsafe {
        gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            0.0,
            spec.alpha,
            false,
            false,
            false,
            par,
        );
    }
}

/// Batched product; `a`, `b` and the result are contiguous row-major buffers of the sizes in `d`.
pub(crate) fn matmul(
    a: &[f32],
    b: &[f32],
    d: &MatmulDims,
    spec: &MatmulSpec,
    threads: usize,
) -> Vec<f32> {
    let (mk, kn, mn) = (d.m * d.k, d.k * d.n, d.m * d.n);
    let mut out = vec![0.0f32; d.batch * mn];
    if mn == 0 {
        return out;
    }
    let b_at = |i: usize| {
        if d.b_batched {
            &b[i * kn..(i + 1) * kn]
        } else {
            b
        }
    };
    let work = d.m * d.n * d.k;
    if d.batch > 1 && threads > 1 && work < THREADING_THRESHOLD * 8 {
        // Many small products (attention heads): one thread per product.
        out.par_chunks_mut(mn).enumerate().for_each(|(i, o)| {
            gemm_one(
                o,
                &a[i * mk..(i + 1) * mk],
                b_at(i),
                d,
                spec,
                Parallelism::None,
            );
        });
    } else {
        let par = if threads > 1 && work >= THREADING_THRESHOLD {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        for (i, o) in out.chunks_mut(mn).enumerate() {
            gemm_one(o, &a[i * mk..(i + 1) * mk], b_at(i), d, spec, par);
        }
    }
    out
}
