//! The backward ops of training (design.md §8) against the f64 gradients of [`crate::reference::backward`] (which
//! are themselves checked against finite differences): one check per op, named for its family, plus their error
//! contract.

#[allow(unused_imports)]
use super::*;
use crate::reference::backward as rb;

fn up_u32(b: &dyn Backend, ids: &[u32], dims: &[usize]) -> Result<Tensor, TestCaseError> {
    ok("upload", b.upload(HostSlice::U32(ids), &Shape::from(dims)))
}

/// Elementwise: `unary_backward` for every unary op.
pub fn unary_backward(b: &dyn Backend) -> Result<(), String> {
    run(
        (unary_ops(), dims_strategy(), any::<u64>()),
        |(op, dims, seed)| {
            let mut rng = Rng::new(seed);
            let n = dims.iter().product();
            let (x, dy) = (rng.vec(n, -4.0, 4.0), rng.vec(n, -1.0, 1.0));
            let got = ok(
                "unary_backward",
                b.unary_backward(op, &up(b, &x, &dims)?, &up(b, &dy, &dims)?),
            )?;
            let want = rb::unary_backward(op, &wide(&x), &wide(&dy));
            close(b, &format!("{op:?} backward"), &got, &want, &dims, TOL)
        },
    )
}

/// Elementwise: GEGLU's backward, and the row sum that is a bias's gradient.
pub fn geglu_backward_and_sum_rows(b: &dyn Backend) -> Result<(), String> {
    run((1usize..20, 1usize..40, any::<u64>()), |(rows, f, seed)| {
        let mut rng = Rng::new(seed);
        let (x, dy) = (
            rng.vec(rows * 2 * f, -3.0, 3.0),
            rng.vec(rows * f, -1.0, 1.0),
        );
        let got = ok(
            "geglu_backward",
            b.geglu_backward(&up(b, &x, &[rows, 2 * f])?, &up(b, &dy, &[rows, f])?),
        )?;
        let want = rb::geglu_backward(&wide(&x), f, &wide(&dy));
        close(b, "geglu_backward", &got, &want, &[rows, 2 * f], TOL)?;
        let got = ok("sum_rows", b.sum_rows(&up(b, &dy, &[rows, f])?))?;
        close(b, "sum_rows", &got, &rb::sum_rows(&wide(&dy), f), &[f], TOL)
    })
}

/// Norm: `layer_norm_train` (the same `y` as `layer_norm`, and its statistics) and `layer_norm_backward`.
pub fn layer_norm_backward(b: &dyn Backend) -> Result<(), String> {
    run(
        (1usize..20, 1usize..200, any::<u64>()),
        |(rows, d, seed)| {
            let mut rng = Rng::new(seed);
            let shift = rng.uniform(-3.0, 3.0);
            let x = rng.vec(rows * d, shift - 2.0, shift + 2.0);
            let (g, be) = (rng.vec(d, 0.5, 1.5), rng.vec(d, -1.0, 1.0));
            let dy = rng.vec(rows * d, -1.0, 1.0);
            let (xt, gt, bt) = (up(b, &x, &[rows, d])?, up(b, &g, &[d])?, up(b, &be, &[d])?);
            let (y, mean, rstd) = ok("layer_norm_train", b.layer_norm_train(&xt, &gt, &bt, 1e-5))?;
            let plain = ok("layer_norm", b.layer_norm(&xt, &gt, &bt, 1e-5))?;
            prop_assert_eq!(
                down(b, &y)?,
                down(b, &plain)?,
                "layer_norm_train's y differs from layer_norm's"
            );
            let (wm, wr) = rb::layer_norm_stats(&wide(&x), d, 1e-5);
            close(b, "mean", &mean, &wm, &[rows], TOL)?;
            close(b, "rstd", &rstd, &wr, &[rows], 1e-4)?;
            let (dx, dg, db) = ok(
                "layer_norm_backward",
                b.layer_norm_backward(&up(b, &dy, &[rows, d])?, &xt, &gt, &mean, &rstd),
            )?;
            let (wdx, wdg, wdb) =
                rb::layer_norm_backward(&wide(&x), d, &wide(&g), &wm, &wr, &wide(&dy));
            close(b, "dx", &dx, &wdx, &[rows, d], 1e-4)?;
            close(b, "dgamma", &dg, &wdg, &[d], 1e-4)?;
            close(b, "dbeta", &db, &wdb, &[d], TOL)
        },
    )
}

/// Norm: `group_norm_train` (the same `y` as `group_norm`, and its statistics) and `group_norm_backward`, on
/// groups whose mean is away from zero.
pub fn group_norm_backward(b: &dyn Backend) -> Result<(), String> {
    run(
        (
            1usize..3,
            1usize..5,
            1usize..4,
            1usize..7,
            1usize..7,
            any::<u64>(),
        ),
        |(n, groups, cg, h, w, seed)| {
            let mut rng = Rng::new(seed);
            let c = groups * cg;
            let dims = [n, c, h, w];
            let len = n * c * h * w;
            let x = rng.vec(len, 0.5, 3.0);
            let (g, be) = (rng.vec(c, 0.5, 1.5), rng.vec(c, -1.0, 1.0));
            let dy = rng.vec(len, -1.0, 1.0);
            let (xt, gt, bt) = (up(b, &x, &dims)?, up(b, &g, &[c])?, up(b, &be, &[c])?);
            let (y, mean, rstd) = ok(
                "group_norm_train",
                b.group_norm_train(&xt, groups, &gt, &bt, 1e-5),
            )?;
            let plain = ok("group_norm", b.group_norm(&xt, groups, &gt, &bt, 1e-5))?;
            prop_assert_eq!(
                down(b, &y)?,
                down(b, &plain)?,
                "group_norm_train's y differs from group_norm's"
            );
            let rp = crate::reference::patch_backward::group_norm_stats;
            let (wm, wr) = rp(&wide(&x), &dims, groups, 1e-5);
            close(b, "mean", &mean, &wm, &[n, groups], TOL)?;
            close(b, "rstd", &rstd, &wr, &[n, groups], 1e-4)?;
            let (dx, dg, db) = ok(
                "group_norm_backward",
                b.group_norm_backward(&up(b, &dy, &dims)?, &xt, groups, &gt, &mean, &rstd),
            )?;
            let (wdx, wdg, wdb) = crate::reference::patch_backward::group_norm_backward(
                &wide(&x),
                &dims,
                groups,
                &wide(&g),
                &wm,
                &wr,
                &wide(&dy),
            );
            close(b, "dx", &dx, &wdx, &dims, 1e-4)?;
            close(b, "dgamma", &dg, &wdg, &[c], 1e-4)?;
            close(b, "dbeta", &db, &wdb, &[c], TOL)
        },
    )
}

/// Gather/conv: `conv2d_backward` with stride and padding, against direct loops.
pub fn conv2d_backward(b: &dyn Backend) -> Result<(), String> {
    run(
        (
            (1usize..3, 1usize..4, 1usize..4),
            (1usize..4, 0usize..2, 1usize..3),
            (3usize..9, 3usize..9),
            any::<u64>(),
        ),
        |((n, c, o), (k, pad, stride), (h, w), seed)| {
            let mut rng = Rng::new(seed);
            let spec = Conv2dSpec {
                stride,
                padding: pad,
            };
            let (xd, wd) = ([n, c, h, w], [o, c, k, k]);
            let x = rng.vec(xd.iter().product(), -1.0, 1.0);
            let wt = rng.vec(wd.iter().product(), -1.0, 1.0);
            let (y, yd) = r::conv2d(&wide(&x), xd, &wide(&wt), wd, None, &spec);
            let dy = rng.vec(y.len(), -1.0, 1.0);
            let (dx, dw, db) = ok(
                "conv2d_backward",
                b.conv2d_backward(
                    &up(b, &x, &xd)?,
                    &up(b, &wt, &wd)?,
                    &up(b, &dy, &yd)?,
                    &spec,
                ),
            )?;
            let (wdx, wdw, wdb) = crate::reference::patch_backward::conv2d_backward(
                &wide(&x),
                xd,
                &wide(&wt),
                wd,
                &wide(&dy),
                &spec,
            );
            let tol = TOL * (c * k * k) as f64;
            close(b, "dx", &dx, &wdx, &xd, tol)?;
            close(b, "dw", &dw, &wdw, &wd, tol)?;
            close(b, "dbias", &db, &wdb, &[o], tol)
        },
    )
}

/// Gather: `embedding_backward` accumulates repeated ids and skips `PAD_ID`.
pub fn embedding_backward(b: &dyn Backend) -> Result<(), String> {
    run(
        (1usize..30, 1usize..100, dims_strategy(), any::<u64>()),
        |(v, d, id_dims, seed)| {
            let mut rng = Rng::new(seed);
            let n: usize = id_dims.iter().product();
            // Few distinct ids, so rows repeat; one in eight positions is padding.
            let ids: Vec<u32> = (0..n)
                .map(|_| {
                    if rng.below(8) == 0 {
                        crate::ops::PAD_ID
                    } else {
                        rng.below(v.min(4)) as u32
                    }
                })
                .collect();
            let dy = rng.vec(n * d, -1.0, 1.0);
            let mut dy_dims = id_dims.clone();
            dy_dims.push(d);
            let got = ok(
                "embedding_backward",
                b.embedding_backward(&up_u32(b, &ids, &id_dims)?, &up(b, &dy, &dy_dims)?, v),
            )?;
            let want = rb::embedding_backward(&ids, &wide(&dy), v, d);
            close(b, "embedding_backward", &got, &want, &[v, d], TOL)
        },
    )
}

/// Attention family: the fused softmax cross-entropy's loss (reduced on the backend) and logits gradient.
pub fn cross_entropy(b: &dyn Backend) -> Result<(), String> {
    run(
        (1usize..12, 1usize..300, 0.1f32..2.0, any::<u64>()),
        |(n, v, scale, seed)| {
            let mut rng = Rng::new(seed);
            let logits = rng.vec(n * v, -8.0, 8.0);
            let targets: Vec<u32> = (0..n)
                .map(|_| {
                    if rng.below(5) == 0 {
                        crate::ops::PAD_ID
                    } else {
                        rng.below(v) as u32
                    }
                })
                .collect();
            let (loss, dl) = ok(
                "cross_entropy",
                b.cross_entropy(
                    &up(b, &logits, &[n, v])?,
                    &up_u32(b, &targets, &[n])?,
                    scale,
                ),
            )?;
            let (wl, wd) = rb::cross_entropy(&wide(&logits), v, &targets, scale as f64);
            close(b, "loss", &loss, &[wl], &[1], TOL)?;
            close(b, "dlogits", &dl, &wd, &[n, v], TOL)
        },
    )
}

/// Attention family: `attention_train` (the same output as `attention`, and each row's log-sum-exp) and the
/// flash-style `attention_backward`, causal or not, with KV-cache offsets and padded sequences.
pub fn attention_backward(b: &dyn Backend) -> Result<(), String> {
    run(
        (
            (1usize..3, 1usize..3, 1usize..150, 0usize..6, 1usize..40),
            any::<bool>(),
            any::<bool>(),
            any::<u64>(),
        ),
        |((bs, h, tq, extra, d), causal, padded, seed)| {
            let mut rng = Rng::new(seed);
            let dv = 1 + rng.below(33);
            let tk = tq + extra;
            let spec = AttentionSpec {
                scale: 1.0 / (d as f32).sqrt(),
                causal,
                q_offset: extra,
                kv_len: padded.then(|| (0..bs).map(|_| rng.below(tk + 1)).collect()),
            };
            let (q, k, v) = (
                rng.vec(bs * h * tq * d, -1.0, 1.0),
                rng.vec(bs * h * tk * d, -1.0, 1.0),
                rng.vec(bs * h * tk * dv, -1.0, 1.0),
            );
            let g = rng.vec(bs * h * tq * dv, -1.0, 1.0);
            let (qd, kd, vd, od) = (
                [bs, h, tq, d],
                [bs, h, tk, d],
                [bs, h, tk, dv],
                [bs, h, tq, dv],
            );
            let (qt, kt, vt) = (up(b, &q, &qd)?, up(b, &k, &kd)?, up(b, &v, &vd)?);
            let (out, lse) = ok("attention_train", b.attention_train(&qt, &kt, &vt, &spec))?;
            let plain = ok("attention", b.attention(&qt, &kt, &vt, &spec))?;
            prop_assert_eq!(
                down(b, &out)?,
                down(b, &plain)?,
                "attention_train's output differs from attention's"
            );
            let dims = [bs, h, tq, tk, d, dv];
            let wl = crate::reference::attention_backward::attention_lse(
                &wide(&q),
                &wide(&k),
                dims,
                &spec,
            );
            let gl = down(b, &lse)?;
            for (i, (x, y)) in gl.iter().zip(&wl).enumerate() {
                let same = (x == y) || (x - y).abs() <= 1e-4 * (1.0 + y.abs());
                prop_assert!(same, "lse[{}] = {}, reference {}", i, x, y);
            }
            let (dq, dk, dvg) = ok(
                "attention_backward",
                b.attention_backward(&qt, &kt, &vt, &out, &lse, &up(b, &g, &od)?, &spec),
            )?;
            let wo = r::attention(&wide(&q), &wide(&k), &wide(&v), dims, &spec);
            let (wq, wk, wv) = crate::reference::attention_backward::attention_backward(
                &wide(&q),
                &wide(&k),
                &wide(&v),
                &wo,
                &wl,
                &wide(&g),
                dims,
                &spec,
            );
            close(b, "dq", &dq, &wq, &qd, 1e-4)?;
            close(b, "dk", &dk, &wk, &kd, 1e-4)?;
            close(b, "dv", &dvg, &wv, &vd, 1e-4)
        },
    )
}

/// Backward ops reject mismatched shapes, out-of-range ids and targets, with errors (never a panic or data).
pub fn backward_errors(b: &dyn Backend) -> Result<(), String> {
    let t = |d: &[usize]| {
        let n = d.iter().product();
        b.upload(HostSlice::F32(&vec![0.5; n]), &Shape::from(d))
            .map_err(|e| e.to_string())
    };
    let ids = |v: &[u32]| {
        b.upload(HostSlice::U32(v), &Shape::from([v.len()]))
            .map_err(|e| e.to_string())
    };
    let expect_err = |what: &str, r: crate::error::Result<()>| match r {
        Err(_) => Ok(()),
        Ok(()) => Err(format!("{what}: accepted bad input")),
    };
    expect_err(
        "unary_backward with dy of another shape",
        b.unary_backward(UnaryOp::Gelu, &t(&[2, 3])?, &t(&[3, 2])?)
            .map(|_| ()),
    )?;
    expect_err(
        "geglu_backward with dy not [.., F]",
        b.geglu_backward(&t(&[2, 4])?, &t(&[2, 4])?).map(|_| ()),
    )?;
    expect_err(
        "layer_norm_backward with mean of the wrong length",
        b.layer_norm_backward(&t(&[2, 3])?, &t(&[2, 3])?, &t(&[3])?, &t(&[3])?, &t(&[2])?)
            .map(|_| ()),
    )?;
    // An asynchronous backend checks ids on the device and reports a bad one at the next synchronisation (the
    // trait's contract for `embedding`); either way it is an error and no data.
    expect_err(
        "embedding_backward with an id past the vocabulary",
        b.embedding_backward(&ids(&[0, 7])?, &t(&[2, 3])?, 5)
            .and_then(|_| b.synchronize()),
    )?;
    expect_err(
        "cross_entropy with a target past the vocabulary",
        b.cross_entropy(&t(&[2, 4])?, &ids(&[1, 4])?, 1.0)
            .and_then(|_| b.synchronize()),
    )?;
    let spec = AttentionSpec {
        scale: 1.0,
        ..Default::default()
    };
    expect_err(
        "attention_backward with lse of the wrong shape",
        b.attention_backward(
            &t(&[1, 1, 2, 3])?,
            &t(&[1, 1, 2, 3])?,
            &t(&[1, 1, 2, 3])?,
            &t(&[1, 1, 2, 3])?,
            &t(&[1, 1, 3])?,
            &t(&[1, 1, 2, 3])?,
            &spec,
        )
        .map(|_| ()),
    )?;
    expect_err(
        "cross_entropy with one target for two rows",
        b.cross_entropy(&t(&[2, 4])?, &ids(&[1])?, 1.0).map(|_| ()),
    )?;
    Ok(())
}
