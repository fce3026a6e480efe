//! Concat, slice and permute for every dtype (KV cache, head split/merge), via ndarray.

use ndarray::{ArrayD, Axis, Slice};

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

pub(crate) fn slice(x: &CpuStorage, axis: usize, start: usize, len: usize) -> CpuStorage {
    per_dtype!(x, a => standard(a.slice_axis(Axis(axis), Slice::from(start..start + len)).to_owned()))
}

pub(crate) fn permute(x: &CpuStorage, perm: &[usize]) -> CpuStorage {
    per_dtype!(x, a => a.view().permuted_axes(perm.to_vec()).as_standard_layout().into_owned())
}

/// All storages have the same dtype and compatible shapes (checked by the caller).
pub(crate) fn concat(xs: &[&CpuStorage], axis: usize) -> Result<CpuStorage, String> {
    macro_rules! cat {
        ($variant:ident) => {{
            let views = xs
                .iter()
                .map(|s| match s {
                    CpuStorage::$variant(a) => Ok(a.view()),
                    _ => Err("mixed dtypes".to_string()),
                })
                .collect::<Result<Vec<_>, String>>()?;
            CpuStorage::$variant(standard(
                ndarray::concatenate(Axis(axis), &views).map_err(|e| e.to_string())?,
            ))
        }};
    }
    Ok(match xs.first().ok_or("no tensors")? {
        CpuStorage::F32(_) => cat!(F32),
        CpuStorage::F16(_) => cat!(F16),
        CpuStorage::BF16(_) => cat!(BF16),
        CpuStorage::U32(_) => cat!(U32),
    })
}
