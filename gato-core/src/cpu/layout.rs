//! Concat, slice and permute for every dtype (KV cache, head split/merge), as block copies over contiguous
//! row-major buffers: the KV cache appends with these on every decoded token, so they run at memcpy speed.
//!
//! A tensor's shape lives in its handle ([`crate::Tensor::reshape`] shares storage), so every function takes the
//! handle's dims; the storage is only a flat buffer here.

use ndarray::{ArrayD, IxDyn};

use super::storage::CpuStorage;

macro_rules! per_dtype {
    ($s:expr, $a:ident => $body:expr) => {
        match $s {
            CpuStorage::F32($a) => CpuStorage::F32($body),
            CpuStorage::F16($a) => CpuStorage::F16($body),
            CpuStorage::BF16($a) => CpuStorage::BF16($body),
            CpuStorage::U32($a) => CpuStorage::U32($body),
        }
    };
}

fn flat<T>(a: &ArrayD<T>) -> Result<&[T], String> {
    a.as_slice()
        .ok_or_else(|| "non-contiguous storage".to_string())
}

fn array<T>(dims: &[usize], v: Vec<T>) -> Result<ArrayD<T>, String> {
    ArrayD::from_shape_vec(IxDyn(dims), v).map_err(|e| e.to_string())
}

/// `x[.., start..start+len, ..]`: `outer` rows of `len·inner` contiguous values.
fn slice_t<T: Copy>(x: &[T], dims: &[usize], axis: usize, start: usize, len: usize) -> Vec<T> {
    let inner: usize = dims[axis + 1..].iter().product();
    let outer: usize = dims[..axis].iter().product();
    let (row, take) = (dims[axis] * inner, len * inner);
    let mut out = Vec::with_capacity(outer * take);
    for o in 0..outer {
        let s = o * row + start * inner;
        out.extend_from_slice(&x[s..s + take]);
    }
    out
}

pub(crate) fn slice(
    x: &CpuStorage,
    dims: &[usize],
    axis: usize,
    start: usize,
    len: usize,
) -> Result<CpuStorage, String> {
    let mut od = dims.to_vec();
    od[axis] = len;
    Ok(per_dtype!(x, a => array(&od, slice_t(flat(a)?, dims, axis, start, len))?))
}

/// `dst[o, start..start+len, :] = src[o, .., :]` for every outer index `o`, with
/// `(outer, dst_axis_len, len, inner)` from [`crate::ops::slice_assign_dims`].
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

/// In-place block write for [`crate::Backend::slice_assign`].
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
fn permute_t<T: Copy + Default>(x: &[T], dims: &[usize], perm: &[usize]) -> Vec<T> {
    let r = dims.len();
    let n: usize = dims.iter().product();
    if r == 0 || n == 0 {
        return x.to_vec();
    }
    let mut strides = vec![1usize; r];
    for i in (0..r - 1).rev() {
        strides[i] = strides[i + 1] * dims[i + 1];
    }
    let od: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let os: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
    // Run length: the innermost output axis, contiguous in the input when it is the input's last axis.
    let run = if perm[r - 1] == r - 1 { od[r - 1] } else { 1 };
    let outer_rank = if run > 1 { r - 1 } else { r };
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; outer_rank];
    for _ in 0..n / run {
        let src: usize = idx.iter().zip(&os).map(|(i, s)| i * s).sum();
        out.extend_from_slice(&x[src..src + run]);
        for a in (0..outer_rank).rev() {
            idx[a] += 1;
            if idx[a] < od[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    out
}

pub(crate) fn permute(
    x: &CpuStorage,
    dims: &[usize],
    perm: &[usize],
) -> Result<CpuStorage, String> {
    let od: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    Ok(per_dtype!(x, a => array(&od, permute_t(flat(a)?, dims, perm))?))
}

/// All storages have the same dtype and compatible dims (checked by the caller).
pub(crate) fn concat(xs: &[(&CpuStorage, &[usize])], axis: usize) -> Result<CpuStorage, String> {
    let first = xs.first().ok_or("no tensors")?;
    let mut od = first.1.to_vec();
    od[axis] = xs.iter().map(|(_, d)| d[axis]).sum();
    let outer: usize = od[..axis].iter().product();
    macro_rules! cat {
        ($variant:ident) => {{
            let parts = xs
                .iter()
                .map(|(s, d)| match s {
                    CpuStorage::$variant(a) => {
                        Ok((flat(a)?, d[axis] * d[axis + 1..].iter().product::<usize>()))
                    }
                    _ => Err("mixed dtypes".to_string()),
                })
                .collect::<Result<Vec<_>, String>>()?;
            let mut out = Vec::with_capacity(od.iter().product());
            for o in 0..outer {
                for (p, blk) in &parts {
                    out.extend_from_slice(&p[o * blk..(o + 1) * blk]);
                }
            }
            CpuStorage::$variant(array(&od, out)?)
        }};
    }
    Ok(match first.0 {
        CpuStorage::F32(_) => cat!(F32),
        CpuStorage::F16(_) => cat!(F16),
        CpuStorage::BF16(_) => cat!(BF16),
        CpuStorage::U32(_) => cat!(U32),
    })
}
