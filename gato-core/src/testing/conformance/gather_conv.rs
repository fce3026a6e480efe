//! Embedding gather and convolution.

#[allow(unused_imports)]
use super::*;

/// Row gather for in-range ids of any shape.
pub fn embedding(b: &dyn Backend) -> Result<(), String> {
    run(
        (1usize..50, 1usize..20, dims_strategy(), any::<u64>()),
        |(v, d, id_dims, seed)| {
            let mut rng = Rng::new(seed);
            let table = rng.vec(v * d, -1.0, 1.0);
            let ids: Vec<u32> = (0..id_dims.iter().product::<usize>())
                .map(|_| rng.below(v) as u32)
                .collect();
            let it = ok(
                "upload",
                b.upload(HostSlice::U32(&ids), &Shape::from(id_dims.as_slice())),
            )?;
            let got = ok("embedding", b.embedding(&up(b, &table, &[v, d])?, &it))?;
            let mut od = id_dims.clone();
            od.push(d);
            close(
                b,
                "embedding",
                &got,
                &r::embedding(&wide(&table), d, &ids),
                &od,
                0.0,
            )
        },
    )
}

/// Convolution with stride, padding and optional bias, against a direct (non-im2col) loop.
pub fn conv2d(b: &dyn Backend) -> Result<(), String> {
    let case = (
        1usize..3,
        1usize..5,
        1usize..9,
        1usize..9,
        1usize..5,
        1usize..4,
        1usize..3,
        0usize..2,
        any::<bool>(),
        any::<u64>(),
    );
    run(case, |(n, c, h, w, o, k, stride, pad, bias, seed)| {
        let k = k.min(h + 2 * pad).min(w + 2 * pad);
        let mut rng = Rng::new(seed);
        let xd = [n, c, h, w];
        let wd = [o, c, k, k];
        let x = rng.vec(xd.iter().product(), -1.0, 1.0);
        let wv = rng.vec(wd.iter().product(), -1.0, 1.0);
        let bv = rng.vec(o, -1.0, 1.0);
        let spec = Conv2dSpec {
            stride,
            padding: pad,
        };
        let bt = up(b, &bv, &[o])?;
        let got = ok(
            "conv2d",
            b.conv2d(
                &up(b, &x, &xd)?,
                &up(b, &wv, &wd)?,
                bias.then_some(&bt),
                &spec,
            ),
        )?;
        let wb = wide(&bv);
        let (want, od) = r::conv2d(
            &wide(&x),
            xd,
            &wide(&wv),
            wd,
            bias.then_some(wb.as_slice()),
            &spec,
        );
        close(
            b,
            &format!("conv2d x{xd:?} w{wd:?} {spec:?}"),
            &got,
            &want,
            &od,
            TOL * (c * k * k) as f64,
        )
    })
}
