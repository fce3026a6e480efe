//! Elementwise kernels: unary functions, broadcast binary ops, affine, GEGLU.

use rayon::prelude::*;

use crate::elementwise::math;
use gato_core::backend::{BinaryOp, UnaryOp};

/// Elements per parallel chunk; smaller inputs run on one thread.
pub(crate) const CHUNK: usize = 1 << 14;

/// `out = f(x)` elementwise in parallel chunks.
pub(crate) fn map(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, i)| o.iter_mut().zip(i).for_each(|(o, &v)| *o = f(v)));
}

/// `out = op(x)`.
pub(crate) fn unary(op: UnaryOp, x: &[f32], out: &mut [f32]) {
    // Each chunk is copied and transformed while in cache: one pass over memory.
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, i)| {
            o.copy_from_slice(i);
            unary_slice(op, o);
        });
}

/// `x ← f(x)` in parallel chunks.
pub(crate) fn unary_in_place(op: UnaryOp, x: &mut [f32]) {
    x.par_chunks_mut(CHUNK).for_each(|c| unary_slice(op, c));
}

/// `x ← f(x)` on this thread (a slice already in cache, e.g. a product's output panel).
pub(crate) fn unary_slice(op: UnaryOp, x: &mut [f32]) {
    match op {
        UnaryOp::Gelu => math::gelu_in_place(x),
        UnaryOp::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
        UnaryOp::Exp => x.iter_mut().for_each(|v| *v = v.exp()),
        UnaryOp::Tanh => x.iter_mut().for_each(|v| *v = v.tanh()),
        UnaryOp::Neg => x.iter_mut().for_each(|v| *v = -*v),
    }
}

/// `out = a ∘ b` with `b` (length `inner`) repeated over `a`.
pub(crate) fn binary(op: BinaryOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    // One monomorphised loop per op (a function pointer would cost an indirect call per element).
    match op {
        BinaryOp::Add => broadcast(a, b, out, |x, y| x + y),
        BinaryOp::Sub => broadcast(a, b, out, |x, y| x - y),
        BinaryOp::Mul => broadcast(a, b, out, |x, y| x * y),
        BinaryOp::Div => broadcast(a, b, out, |x, y| x / y),
        BinaryOp::Maximum => broadcast(a, b, out, f32::max),
    }
}

fn broadcast(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    if b.is_empty() {
        return;
    }
    let inner = b.len();
    // Chunks are whole multiples of `inner` so each chunk starts at b[0].
    let rows_per_chunk = (CHUNK / inner).max(1);
    out.par_chunks_mut(rows_per_chunk * inner)
        .zip(a.par_chunks(rows_per_chunk * inner))
        .for_each(|(o, x)| {
            for (o_row, x_row) in o.chunks_mut(inner).zip(x.chunks(inner)) {
                for ((o, &x), &y) in o_row.iter_mut().zip(x_row).zip(b) {
                    *o = f(x, y);
                }
            }
        });
}

/// GEGLU over rows of `2F` into rows of `F`: `gelu(first half) · second half`.
pub(crate) fn geglu(x: &[f32], f: usize, out: &mut [f32]) {
    if f == 0 {
        return;
    }
    out.par_chunks_mut(f)
        .zip(x.par_chunks(2 * f))
        .for_each(|(o, row)| {
            let (g, lin) = row.split_at(f);
            math::gelu_mul(o, g, lin);
        });
}
