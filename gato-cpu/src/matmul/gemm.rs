//! Matrix products on the CPU: the `gemm` crate (cache-blocked, SIMD kernels chosen at run time, rayon threads)
//! for large products, [`crate::matmul::small_m`] for products of at most 256 rows against a shared weight (the acting
//! path), which also reads f16/bf16 weights directly. A bias row is fused into the product in both paths.

use std::borrow::Cow;

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

use crate::elementwise::kernels::unary_in_place;
use crate::elementwise::math;
use crate::matmul::small_m::{self, Weights};
use gato_core::backend::UnaryOp;

use gato_core::backend::MatmulSpec;
use gato_core::ops::MatmulDims;

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

/// One product `out = alpha · op(a) · op(b)` into `out` (`[M, N]`), overwritten, or added to what `out` holds
/// when `accumulate` (the fused bias: `out` starts as bias rows).
fn gemm_one(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    d: &MatmulDims,
    spec: &MatmulSpec,
    par: Parallelism,
    accumulate: bool,
) {
    let (m, n, k) = (d.m, d.n, d.k);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
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
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            if accumulate { 1.0 } else { 0.0 },
            spec.alpha,
            false,
            false,
            false,
            par,
        );
    }
}

/// Batched product plus an optional bias row `[N]` added to every output row, then an optional activation, into
/// `out` (zeroed, `[batch, M, N]`); `a` and `out` are contiguous row-major f32 buffers, `b` any float weight type,
/// of the sizes in `d`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    a: &[f32],
    b: Weights<'_>,
    d: &MatmulDims,
    spec: &MatmulSpec,
    threads: usize,
    bias: Option<&[f32]>,
    act: Option<UnaryOp>,
    out: &mut [f32],
) {
    let (mk, kn, mn) = (d.m * d.k, d.k * d.n, d.m * d.n);
    debug_assert_eq!(out.len(), d.batch * mn);
    if mn == 0 {
        return;
    }
    // Few rows against one shared, untransposed weight: batch dims fold into M.
    let rows = d.batch * d.m;
    if !spec.trans_a && !spec.trans_b && !d.b_batched && rows <= small_m::MAX_ROWS {
        small_m::matmul(out, a, b, rows, d.k, d.n, spec.alpha, bias, act);
        return;
    }
    // A few rows against a shared f32 weight stored transposed (`[N, K]`: the output table's legal rows when
    // acting): one dot product per output, at the weight's read bandwidth, with no packing and no per-thread
    // buffers (the `gemm` crate keeps one per thread, allocated on a thread's first call).
    if let (Weights::F32(bt), true) = (b, !spec.trans_a && spec.trans_b && !d.b_batched) {
        if rows <= NT_DIRECT_ROWS {
            nt_direct(out, a, bt, rows, d.k, d.n, spec.alpha, bias);
            if let Some(op) = act {
                unary_in_place(op, out);
            }
            return;
        }
    }
    let b: Cow<'_, [f32]> = match b {
        Weights::F32(b) => Cow::Borrowed(b),
        Weights::F16(b) => Cow::Owned(widen(b, |v| v.to_f32())),
        Weights::BF16(b) => Cow::Owned(widen(b, |v| v.to_f32())),
    };
    if let Some(bias) = bias {
        out.par_chunks_mut(d.n)
            .for_each(|row| row.copy_from_slice(bias));
    }
    let accumulate = bias.is_some();
    let b_at = |i: usize| {
        if d.b_batched {
            &b[i * kn..(i + 1) * kn]
        } else {
            &b[..]
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
                accumulate,
            );
        });
    } else {
        let par = if threads > 1 && work >= THREADING_THRESHOLD {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        for (i, o) in out.chunks_mut(mn).enumerate() {
            gemm_one(
                o,
                &a[i * mk..(i + 1) * mk],
                b_at(i),
                d,
                spec,
                par,
                accumulate,
            );
        }
    }
    if let Some(op) = act {
        unary_in_place(op, out);
    }
}

/// Up to this many rows, a product with a transposed shared weight runs as dot products ([`nt_direct`]).
const NT_DIRECT_ROWS: usize = 4;

/// Output columns per task of [`nt_direct`].
const NT_COLUMNS: usize = 64;

/// `out[r, c] = alpha · a[r, :] · bt[c, :] (+ bias[c])` for `rows` rows, `bt` being `[n, k]` row-major.
#[allow(clippy::too_many_arguments)]
fn nt_direct(
    out: &mut [f32],
    a: &[f32],
    bt: &[f32],
    rows: usize,
    k: usize,
    n: usize,
    alpha: f32,
    bias: Option<&[f32]>,
) {
    let out_ptr = small_m::SendPtr(out.as_mut_ptr());
    (0..n.div_ceil(NT_COLUMNS)).into_par_iter().for_each(|t| {
        for c in t * NT_COLUMNS..((t + 1) * NT_COLUMNS).min(n) {
            let col = &bt[c * k..(c + 1) * k];
            for r in 0..rows {
                let v = alpha * math::dot(&a[r * k..(r + 1) * k], col) + bias.map_or(0.0, |b| b[c]);
                // SAFETY: r < rows, c < n, and only this task writes column c.
                unsafe { *out_ptr.get().add(r * n + c) = v };
            }
        }
    });
}

/// f16/bf16 → f32 in parallel chunks (exact).
fn widen<T: Copy + Sync>(x: &[T], f: impl Fn(T) -> f32 + Sync) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(1 << 14)
        .zip(x.par_chunks(1 << 14))
        .for_each(|(o, i)| o.iter_mut().zip(i).for_each(|(o, &v)| *o = f(v)));
    out
}
