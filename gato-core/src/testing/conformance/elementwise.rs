//! Unary and binary maps, affine, GEGLU.

#[allow(unused_imports)]
use super::*;

/// Every unary op.
pub fn unary(b: &dyn Backend) -> Result<(), String> {
    run(
        (unary_ops(), dims_strategy(), any::<u64>()),
        |(op, dims, seed)| {
            let x = Rng::new(seed).vec(dims.iter().product(), -6.0, 6.0);
            let got = ok("unary", b.unary(op, &up(b, &x, &dims)?))?;
            close(
                b,
                &format!("{op:?}"),
                &got,
                &r::unary(op, &wide(&x)),
                &dims,
                TOL,
            )
        },
    )
}

/// Every binary op, with `b` equal in shape or a broadcast suffix.
pub fn binary(b: &dyn Backend) -> Result<(), String> {
    let ops = prop_oneof![
        Just(BinaryOp::Add),
        Just(BinaryOp::Sub),
        Just(BinaryOp::Mul),
        Just(BinaryOp::Div),
        Just(BinaryOp::Maximum)
    ];
    run(
        (ops, dims_strategy(), 0usize..4, any::<u64>()),
        |(op, dims, drop, seed)| {
            let mut rng = Rng::new(seed);
            let bd = dims[drop.min(dims.len() - 1)..].to_vec();
            let x = rng.vec(dims.iter().product(), -3.0, 3.0);
            // Keep divisors away from zero.
            let y: Vec<f32> = rng
                .vec(bd.iter().product(), 0.5, 3.0)
                .into_iter()
                .map(|v| if rng.below(2) == 0 { v } else { -v })
                .collect();
            let got = ok("binary", b.binary(op, &up(b, &x, &dims)?, &up(b, &y, &bd)?))?;
            close(
                b,
                &format!("{op:?} a{dims:?} b{bd:?}"),
                &got,
                &r::binary(op, &wide(&x), &wide(&y)),
                &dims,
                TOL,
            )
        },
    )
}

/// `x · mul + add`.
pub fn affine(b: &dyn Backend) -> Result<(), String> {
    run(
        (dims_strategy(), -3.0f32..3.0, -3.0f32..3.0, any::<u64>()),
        |(dims, mul, add, seed)| {
            let x = Rng::new(seed).vec(dims.iter().product(), -3.0, 3.0);
            let got = ok("affine", b.affine(&up(b, &x, &dims)?, mul, add))?;
            let want: Vec<f64> = x
                .iter()
                .map(|&v| v as f64 * mul as f64 + add as f64)
                .collect();
            close(b, "affine", &got, &want, &dims, TOL)
        },
    )
}

/// GEGLU halves the last dim.
pub fn geglu(b: &dyn Backend) -> Result<(), String> {
    run((1usize..20, 1usize..40, any::<u64>()), |(rows, f, seed)| {
        let x = Rng::new(seed).vec(rows * 2 * f, -4.0, 4.0);
        let got = ok("geglu", b.geglu(&up(b, &x, &[rows, 2 * f])?))?;
        close(b, "geglu", &got, &r::geglu(&wide(&x), f), &[rows, f], TOL)
    })
}
