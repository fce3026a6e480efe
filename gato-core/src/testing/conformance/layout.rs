//! Concat, slice, in-place writes (copy-on-write) and permutations.

#[allow(unused_imports)]
use super::*;

/// Concatenation along any axis (as the KV cache appends).
pub fn concat(b: &dyn Backend) -> Result<(), String> {
    run(
        (
            dims_strategy(),
            0usize..3,
            prop::collection::vec(0usize..4, 1..4),
            any::<u64>(),
        ),
        |(dims, axis, sizes, seed)| {
            let axis = axis % dims.len();
            let mut rng = Rng::new(seed);
            let parts: Vec<(Vec<f32>, Vec<usize>)> = sizes
                .iter()
                .map(|&s| {
                    let mut d = dims.clone();
                    d[axis] = s;
                    (rng.vec(d.iter().product(), -1.0, 1.0), d)
                })
                .collect();
            let tensors = parts
                .iter()
                .map(|(v, d)| up(b, v, d))
                .collect::<Result<Vec<_>, _>>()?;
            let refs: Vec<&Tensor> = tensors.iter().collect();
            let got = ok("concat", b.concat(&refs, axis))?;
            let wides: Vec<(Vec<f64>, Vec<usize>)> =
                parts.iter().map(|(v, d)| (wide(v), d.clone())).collect();
            let args: Vec<(&[f64], &[usize])> = wides
                .iter()
                .map(|(v, d)| (v.as_slice(), d.as_slice()))
                .collect();
            let (want, wd) = r::concat(&args, axis);
            close(b, "concat", &got, &want, &wd, 0.0)
        },
    )
}

/// Slicing along any axis.
pub fn slice(b: &dyn Backend) -> Result<(), String> {
    run(
        (dims_strategy(), 0usize..3, any::<u64>()),
        |(dims, axis, seed)| {
            let axis = axis % dims.len();
            let mut rng = Rng::new(seed);
            let start = rng.below(dims[axis] + 1);
            let len = rng.below(dims[axis] - start + 1);
            let x = rng.vec(dims.iter().product(), -1.0, 1.0);
            let got = ok("slice", b.slice(&up(b, &x, &dims)?, axis, start, len))?;
            let (want, wd) = r::slice(&wide(&x), &dims, axis, start, len);
            close(b, "slice", &got, &want, &wd, 0.0)
        },
    )
}

/// In-place writes along any axis (the KV cache append), and copy-on-write: a clone taken before the write keeps
/// its values.
pub fn slice_assign(b: &dyn Backend) -> Result<(), String> {
    run(
        (dims_strategy(), 0usize..3, any::<u64>()),
        |(dims, axis, seed)| {
            let axis = axis % dims.len();
            let mut rng = Rng::new(seed);
            let start = rng.below(dims[axis] + 1);
            let len = rng.below(dims[axis] - start + 1);
            let mut sd = dims.clone();
            sd[axis] = len;
            let (x, y) = (
                rng.vec(dims.iter().product(), -1.0, 1.0),
                rng.vec(sd.iter().product(), -1.0, 1.0),
            );
            let mut dst = up(b, &x, &dims)?;
            let before = dst.clone();
            ok(
                "slice_assign",
                b.slice_assign(&mut dst, &up(b, &y, &sd)?, axis, start),
            )?;
            let n = dims[axis];
            let (head, hd) = r::slice(&wide(&x), &dims, axis, 0, start);
            let (tail, td) = r::slice(&wide(&x), &dims, axis, start + len, n - start - len);
            let yw = wide(&y);
            let (want, wd) = r::concat(&[(&head, &hd), (&yw, &sd), (&tail, &td)], axis);
            close(b, "slice_assign", &dst, &want, &wd, 0.0)?;
            close(
                b,
                "slice_assign (earlier clone)",
                &before,
                &wide(&x),
                &dims,
                0.0,
            )?;
            // A second write into the now-unshared tensor (the in-place path).
            ok(
                "slice_assign",
                b.slice_assign(&mut dst, &up(b, &y, &sd)?, axis, start),
            )?;
            close(b, "slice_assign twice", &dst, &want, &wd, 0.0)
        },
    )
}

/// Any permutation of up to 4 dims (head split and merge).
pub fn permute(b: &dyn Backend) -> Result<(), String> {
    run(
        (prop::collection::vec(1usize..6, 1..5), any::<u64>()),
        |(dims, seed)| {
            let mut rng = Rng::new(seed);
            let mut perm: Vec<usize> = (0..dims.len()).collect();
            for i in (1..perm.len()).rev() {
                perm.swap(i, rng.below(i + 1));
            }
            let x = rng.vec(dims.iter().product(), -1.0, 1.0);
            let got = ok("permute", b.permute(&up(b, &x, &dims)?, &perm))?;
            let (want, wd) = r::permute(&wide(&x), &dims, &perm);
            close(
                b,
                &format!("permute {dims:?} {perm:?}"),
                &got,
                &want,
                &wd,
                0.0,
            )
        },
    )
}
