//! f64 gradients of the patch embedding's ops (App. C.2): GroupNorm from its saved statistics, and the 2-D
//! convolution's input, weight and bias gradients, written as the direct loops of the forward references.

use crate::backend::Conv2dSpec;

/// Per (image, group) of NCHW `dims`: the mean and `1/√(var + eps)` (biased variance), `[N, groups]`.
pub fn group_norm_stats(
    x: &[f64],
    dims: &[usize],
    groups: usize,
    eps: f64,
) -> (Vec<f64>, Vec<f64>) {
    let (n, c, hw) = (dims[0], dims[1], dims[2] * dims[3]);
    let len = c / groups * hw;
    (0..n * groups)
        .map(|ng| {
            let vals = &x[ng * len..(ng + 1) * len];
            let mean = vals.iter().sum::<f64>() / len as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / len as f64;
            (mean, 1.0 / (var + eps).sqrt())
        })
        .unzip()
}

/// GroupNorm backward: `(dx, dγ, dβ)`, with `x̂ = (x − mean)·rstd`, `g = dy·γ_c`, and per group
/// `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))`; `dγ_c = Σ dy·x̂`, `dβ_c = Σ dy` over images and pixels.
pub fn group_norm_backward(
    x: &[f64],
    dims: &[usize],
    groups: usize,
    gamma: &[f64],
    mean: &[f64],
    rstd: &[f64],
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, c, hw) = (dims[0], dims[1], dims[2] * dims[3]);
    let cg = c / groups;
    let len = cg * hw;
    let (mut dx, mut dg, mut db) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
    for ng in 0..n * groups {
        let g0 = (ng % groups) * cg;
        let at = |i: usize| ng * len + i;
        let ch = |i: usize| g0 + i / hw;
        let xhat = |i: usize| (x[at(i)] - mean[ng]) * rstd[ng];
        let gg = |i: usize| dy[at(i)] * gamma[ch(i)];
        let m1 = (0..len).map(gg).sum::<f64>() / len as f64;
        let m2 = (0..len).map(|i| gg(i) * xhat(i)).sum::<f64>() / len as f64;
        for i in 0..len {
            dx[at(i)] = rstd[ng] * (gg(i) - m1 - xhat(i) * m2);
            dg[ch(i)] += dy[at(i)] * xhat(i);
            db[ch(i)] += dy[at(i)];
        }
    }
    (dx, dg, db)
}

/// Conv2d backward (`x: [N, C, H, W]`, `w: [O, C, kh, kw]`, `dy: [N, O, OH, OW]`): `(dx, dw, dbias)`.
pub fn conv2d_backward(
    x: &[f64],
    xd: [usize; 4],
    w: &[f64],
    wd: [usize; 4],
    dy: &[f64],
    spec: &Conv2dSpec,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let [n, c, h, wi] = xd;
    let [o, _, kh, kw] = wd;
    let (s, p) = (spec.stride, spec.padding as isize);
    let oh = (h + 2 * spec.padding - kh) / s + 1;
    let ow = (wi + 2 * spec.padding - kw) / s + 1;
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; o]);
    for b in 0..n {
        for oc in 0..o {
            for oy in 0..oh {
                for ox in 0..ow {
                    let g = dy[((b * o + oc) * oh + oy) * ow + ox];
                    db[oc] += g;
                    for ic in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * s + ky) as isize - p;
                                let ix = (ox * s + kx) as isize - p;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wi {
                                    let xi = ((b * c + ic) * h + iy as usize) * wi + ix as usize;
                                    let wj = ((oc * c + ic) * kh + ky) * kw + kx;
                                    dx[xi] += g * w[wj];
                                    dw[wj] += g * x[xi];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference as r;
    use crate::reference::test_values as values;

    fn check(what: &str, x: &[f64], w: &[f64], f: impl Fn(&[f64]) -> Vec<f64>, grad: &[f64]) {
        let h = 1e-6;
        let loss = |x: &[f64]| f(x).iter().zip(w).map(|(a, b)| a * b).sum::<f64>();
        for i in 0..x.len() {
            let (mut xp, mut xm) = (x.to_vec(), x.to_vec());
            xp[i] += h;
            xm[i] -= h;
            let fd = (loss(&xp) - loss(&xm)) / (2.0 * h);
            assert!(
                (fd - grad[i]).abs() < 1e-6 * (1.0 + grad[i].abs()),
                "{what}[{i}]: fd {fd}, analytic {}",
                grad[i]
            );
        }
    }

    #[test]
    fn group_norm_matches_finite_differences() {
        let (dims, groups, eps) = ([2usize, 4, 3, 2], 2, 1e-5);
        let n: usize = dims.iter().product();
        let x = values(n, 1, 1.0, 4.0);
        let (g, b) = (values(4, 2, 0.5, 1.5), values(4, 3, -1.0, 1.0));
        let w = values(n, 4, -1.0, 1.0);
        let (mean, rstd) = group_norm_stats(&x, &dims, groups, eps);
        let (dx, dg, db) = group_norm_backward(&x, &dims, groups, &g, &mean, &rstd, &w);
        check(
            "dx",
            &x,
            &w,
            |x| r::group_norm(x, &dims, groups, &g, &b, eps),
            &dx,
        );
        check(
            "dgamma",
            &g,
            &w,
            |g| r::group_norm(&x, &dims, groups, g, &b, eps),
            &dg,
        );
        check(
            "dbeta",
            &b,
            &w,
            |b| r::group_norm(&x, &dims, groups, &g, b, eps),
            &db,
        );
    }

    #[test]
    fn conv2d_matches_finite_differences() {
        for spec in [
            Conv2dSpec {
                stride: 1,
                padding: 1,
            },
            Conv2dSpec {
                stride: 2,
                padding: 0,
            },
        ] {
            let (xd, wd) = ([2usize, 3, 5, 4], [2usize, 3, 3, 3]);
            let x = values(xd.iter().product(), 5, -1.0, 1.0);
            let wt = values(wd.iter().product(), 6, -1.0, 1.0);
            let bias = values(2, 7, -1.0, 1.0);
            let (y, yd) = r::conv2d(&x, xd, &wt, wd, Some(&bias), &spec);
            let w = values(y.len(), 8, -1.0, 1.0);
            assert_eq!(y.len(), yd.iter().product::<usize>());
            let (dx, dw, db) = conv2d_backward(&x, xd, &wt, wd, &w, &spec);
            check(
                "dx",
                &x,
                &w,
                |x| r::conv2d(x, xd, &wt, wd, Some(&bias), &spec).0,
                &dx,
            );
            check(
                "dw",
                &wt,
                &w,
                |k| r::conv2d(&x, xd, k, wd, Some(&bias), &spec).0,
                &dw,
            );
            check(
                "dbias",
                &bias,
                &w,
                |b| r::conv2d(&x, xd, &wt, wd, Some(b), &spec).0,
                &db,
            );
        }
    }
}
