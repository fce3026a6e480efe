//! Concat, slice and permute for every dtype (KV cache, head split/merge), as block copies over contiguous
//! row-major buffers: the KV cache appends with these on every decoded token, so they run at memcpy speed.
//!
//! A tensor's shape lives in its handle ([`gato_core::Tensor::reshape`] shares storage), so every function takes the
//! handle's dims; the storage is only a flat buffer here.

use ndarray::ArrayD;

use crate::storage::CpuStorage;
use gato_core::shape::INLINE_RANK;

/// Run `$body` with `$a` (the source values) and `$o` (the output values) of one dtype.
macro_rules! per_dtype_pair {
    ($s:expr, $out:expr, ($a:ident, $o:ident) => $body:expr) => {
        match ($s, $out) {
            (CpuStorage::F32($a), CpuStorage::F32($o)) => $body,
            (CpuStorage::F16($a), CpuStorage::F16($o)) => $body,
            (CpuStorage::BF16($a), CpuStorage::BF16($o)) => $body,
            (CpuStorage::U32($a), CpuStorage::U32($o)) => $body,
            _ => return Err("dtypes differ".into()),
        }
    };
}

fn flat<T>(a: &ArrayD<T>) -> Result<&[T], String> {
    a.as_slice()
        .ok_or_else(|| "non-contiguous storage".to_string())
}

/// `x[.., start..start+len, ..]`: `outer` rows of `len·inner` contiguous values.
fn slice_t<T: Copy>(x: &[T], out: &mut [T], dims: &[usize], axis: usize, start: usize, len: usize) {
    let inner: usize = dims[axis + 1..].iter().product();
    let (row, take) = (dims[axis] * inner, len * inner);
    if take == 0 {
        return;
    }
    for (o, dst) in out.chunks_exact_mut(take).enumerate() {
        let s = o * row + start * inner;
        dst.copy_from_slice(&x[s..s + take]);
    }
}

/// `x[.., start..start+len, ..]` along `axis` into `out` (same dtype, the sliced shape).
pub(crate) fn slice(
    x: &CpuStorage,
    dims: &[usize],
    axis: usize,
    start: usize,
    len: usize,
    out: &mut CpuStorage,
) -> Result<(), String> {
    per_dtype_pair!(x, out, (a, o) => slice_t(flat(a)?, flat_mut(o)?, dims, axis, start, len));
    Ok(())
}

/// `dst[o, start..start+len, :] = src[o, .., :]` for every outer index `o`, with
/// `(outer, dst_axis_len, len, inner)` from [`gato_core::ops::slice_assign_dims`].
fn write_t<T: Copy>(dst: &mut [T], src: &[T], plan: (usize, usize, usize, usize), start: usize) {
    let (outer, n, len, inner) = plan;
    let (row, take) = (n * inner, len * inner);
    for o in 0..outer {
        let d = o * row + start * inner;
        dst[d..d + take].copy_from_slice(&src[o * take..(o + 1) * take]);
    }
}

fn flat_mut<T>(a: &mut ArrayD<T>) -> Result<&mut [T], String> {
    a.as_slice_mut()
        .ok_or_else(|| "non-contiguous storage".to_string())
}

/// In-place block write for [`gato_core::LayoutOps::slice_assign`].
pub(crate) fn write_block(
    dst: &mut CpuStorage,
    src: &CpuStorage,
    plan: (usize, usize, usize, usize),
    start: usize,
) -> Result<(), String> {
    match (dst, src) {
        (CpuStorage::F32(d), CpuStorage::F32(s)) => write_t(flat_mut(d)?, flat(s)?, plan, start),
        (CpuStorage::F16(d), CpuStorage::F16(s)) => write_t(flat_mut(d)?, flat(s)?, plan, start),
        (CpuStorage::BF16(d), CpuStorage::BF16(s)) => write_t(flat_mut(d)?, flat(s)?, plan, start),
        (CpuStorage::U32(d), CpuStorage::U32(s)) => write_t(flat_mut(d)?, flat(s)?, plan, start),
        _ => return Err("dtypes differ".into()),
    }
    Ok(())
}

/// Output dim `i` is input dim `perm[i]`; copies contiguous runs of the innermost axis when it stays last.
fn permute_t<T: Copy>(x: &[T], out: &mut [T], dims: &[usize], perm: &[usize]) {
    let r = dims.len();
    let n: usize = dims.iter().product();
    if r == 0 || n == 0 {
        out.copy_from_slice(x);
        return;
    }
    // Index vectors of at most `INLINE_RANK` entries live on the stack.
    let mut strides: Dims = smallvec::smallvec![1usize; r];
    for i in (0..r - 1).rev() {
        strides[i] = strides[i + 1] * dims[i + 1];
    }
    let od: Dims = perm.iter().map(|&p| dims[p]).collect();
    let os: Dims = perm.iter().map(|&p| strides[p]).collect();
    // Run length: the innermost output axis, contiguous in the input when it is the input's last axis.
    let run = if perm[r - 1] == r - 1 { od[r - 1] } else { 1 };
    let outer_rank = if run > 1 { r - 1 } else { r };
    let mut idx: Dims = smallvec::smallvec![0usize; outer_rank];
    for dst in out.chunks_exact_mut(run) {
        let src: usize = idx.iter().zip(&os).map(|(i, s)| i * s).sum();
        dst.copy_from_slice(&x[src..src + run]);
        for a in (0..outer_rank).rev() {
            idx[a] += 1;
            if idx[a] < od[a] {
                break;
            }
            idx[a] = 0;
        }
    }
}

/// Dims or strides of one tensor, inline up to rank [`INLINE_RANK`].
type Dims = smallvec::SmallVec<[usize; INLINE_RANK]>;

/// `x` with its dims reordered by `perm` into `out` (same dtype, the permuted shape).
pub(crate) fn permute(
    x: &CpuStorage,
    dims: &[usize],
    perm: &[usize],
    out: &mut CpuStorage,
) -> Result<(), String> {
    per_dtype_pair!(x, out, (a, o) => permute_t(flat(a)?, flat_mut(o)?, dims, perm));
    Ok(())
}

/// All storages have the same dtype and compatible dims (checked by the caller); `out` has the concatenated shape.
pub(crate) fn concat(
    xs: &[(&CpuStorage, &[usize])],
    axis: usize,
    out: &mut CpuStorage,
) -> Result<(), String> {
    let first = xs.first().ok_or("no tensors")?;
    let outer: usize = first.1[..axis].iter().product();
    macro_rules! cat {
        ($variant:ident, $o:expr) => {{
            let parts = xs
                .iter()
                .map(|(s, d)| match s {
                    CpuStorage::$variant(a) => {
                        Ok((flat(a)?, d[axis] * d[axis + 1..].iter().product::<usize>()))
                    }
                    _ => Err("mixed dtypes".to_string()),
                })
                .collect::<Result<Vec<_>, String>>()?;
            let dst = flat_mut($o)?;
            let mut at = 0;
            for o in 0..outer {
                for (p, blk) in &parts {
                    dst[at..at + blk].copy_from_slice(&p[o * blk..(o + 1) * blk]);
                    at += blk;
                }
            }
        }};
    }
    match out {
        CpuStorage::F32(o) => cat!(F32, o),
        CpuStorage::F16(o) => cat!(F16, o),
        CpuStorage::BF16(o) => cat!(BF16, o),
        CpuStorage::U32(o) => cat!(U32, o),
    }
    Ok(())
}
