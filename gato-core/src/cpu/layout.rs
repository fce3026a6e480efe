//! Concat, slice and permute for every dtype (KV cache, head split/merge), via ndarray.
//!
//! A tensor's shape lives in its handle: [`crate::Tensor::reshape`] shares the storage, whose ndarray keeps the
//! shape it was created with. Every op here therefore first views the storage in the handle's shape.

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Slice};

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

fn standard<T: Clone>(a: ArrayD<T>) -> ArrayD<T> {
    if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    }
}

/// The storage viewed in `dims` (same element count, standard layout — guaranteed by the caller).
fn view<'a, T>(a: &'a ArrayD<T>, dims: &[usize]) -> Result<ArrayViewD<'a, T>, String> {
    a.view()
        .into_shape_with_order(IxDyn(dims))
        .map_err(|e| e.to_string())
}

pub(crate) fn slice(
    x: &CpuStorage,
    dims: &[usize],
    axis: usize,
    start: usize,
    len: usize,
) -> Result<CpuStorage, String> {
    Ok(
        per_dtype!(x, a => standard(view(a, dims)?.slice_axis(Axis(axis), Slice::from(start..start + len)).to_owned())),
    )
}

pub(crate) fn permute(
    x: &CpuStorage,
    dims: &[usize],
    perm: &[usize],
) -> Result<CpuStorage, String> {
    Ok(
        per_dtype!(x, a => view(a, dims)?.permuted_axes(perm.to_vec()).as_standard_layout().into_owned()),
    )
}

/// All storages have the same dtype and compatible shapes (checked by the caller).
pub(crate) fn concat(xs: &[(&CpuStorage, &[usize])], axis: usize) -> Result<CpuStorage, String> {
    macro_rules! cat {
        ($variant:ident) => {{
            let views = xs
                .iter()
                .map(|(s, dims)| match s {
                    CpuStorage::$variant(a) => view(a, dims),
                    _ => Err("mixed dtypes".to_string()),
                })
                .collect::<Result<Vec<_>, String>>()?;
            CpuStorage::$variant(standard(
                ndarray::concatenate(Axis(axis), &views).map_err(|e| e.to_string())?,
            ))
        }};
    }
    Ok(match xs.first().ok_or("no tensors")?.0 {
        CpuStorage::F32(_) => cat!(F32),
        CpuStorage::F16(_) => cat!(F16),
        CpuStorage::BF16(_) => cat!(BF16),
        CpuStorage::U32(_) => cat!(U32),
    })
}
