//! Naive f64 gradients of the ops training needs (paper §2.3: behaviour cloning with a masked cross-entropy),
//! written from the formulas with plain loops and checked against central finite differences of the forward
//! references (the tests below), so the backends' backward ops are checked against something independently right.
//!
//! Conventions: `dy` is the gradient of the loss with respect to the op's output; every function returns the
//! gradient with respect to each input, in the input's shape.

use crate::backend::UnaryOp;
use crate::ops::PAD_ID;

/// dΦ-weighted derivative of exact GELU: `d/dx [x·Φ(x)] = Φ(x) + x·φ(x)`.
pub fn gelu_grad(x: f64) -> f64 {
    let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
    let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    cdf + x * pdf
}

/// `dx = dy · f'(x)` for every unary op.
pub fn unary_backward(op: UnaryOp, x: &[f64], dy: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(dy)
        .map(|(&x, &g)| {
            g * match op {
                UnaryOp::Gelu => gelu_grad(x),
                UnaryOp::Relu => f64::from(u8::from(x > 0.0)),
                UnaryOp::Exp => x.exp(),
                UnaryOp::Tanh => 1.0 - x.tanh() * x.tanh(),
                UnaryOp::Neg => -1.0,
            }
        })
        .collect()
}

/// GEGLU `y = gelu(a) · b` with `x = [a, b]` split on the last dim (`f` each): `da = dy·b·gelu'(a)`,
/// `db = dy·gelu(a)`.
pub fn geglu_backward(x: &[f64], f: usize, dy: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; x.len()];
    if f == 0 {
        return dx;
    }
    for ((row, dxr), g) in x.chunks(2 * f).zip(dx.chunks_mut(2 * f)).zip(dy.chunks(f)) {
        for i in 0..f {
            let (a, b) = (row[i], row[f + i]);
            dxr[i] = g[i] * b * gelu_grad(a);
            dxr[f + i] = g[i] * super::gelu(a);
        }
    }
    dx
}

/// Sum over every row of `[rows, d]`: the gradient of a bias broadcast over the rows.
pub fn sum_rows(x: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0.0; d];
    for row in x.chunks(d.max(1)) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
    out
}

/// Per row of `[rows, d]`: the mean and `1/√(var + eps)` (biased variance), what LayerNorm's backward needs.
pub fn layer_norm_stats(x: &[f64], d: usize, eps: f64) -> (Vec<f64>, Vec<f64>) {
    x.chunks(d.max(1))
        .map(|row| {
            let n = row.len() as f64;
            let mean = row.iter().sum::<f64>() / n;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            (mean, 1.0 / (var + eps).sqrt())
        })
        .unzip()
}

/// LayerNorm backward from the saved statistics: with `x̂ = (x − mean)·rstd`, `dβ = Σ dy`, `dγ = Σ dy·x̂` (over
/// rows), and `dx = rstd · (g − mean(g) − x̂·mean(g·x̂))` with `g = dy·γ`. Returns `(dx, dγ, dβ)`.
pub fn layer_norm_backward(
    x: &[f64],
    d: usize,
    gamma: &[f64],
    mean: &[f64],
    rstd: &[f64],
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut dx, mut dgamma, mut dbeta) = (vec![0.0; x.len()], vec![0.0; d], vec![0.0; d]);
    if d == 0 {
        return (dx, dgamma, dbeta);
    }
    for (r, ((row, g), dxr)) in x
        .chunks(d)
        .zip(dy.chunks(d))
        .zip(dx.chunks_mut(d))
        .enumerate()
    {
        let xhat: Vec<f64> = row.iter().map(|v| (v - mean[r]) * rstd[r]).collect();
        let gg: Vec<f64> = g.iter().zip(gamma).map(|(g, w)| g * w).collect();
        let m1 = gg.iter().sum::<f64>() / d as f64;
        let m2 = gg.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / d as f64;
        for i in 0..d {
            dxr[i] = rstd[r] * (gg[i] - m1 - xhat[i] * m2);
            dgamma[i] += g[i] * xhat[i];
            dbeta[i] += g[i];
        }
    }
    (dx, dgamma, dbeta)
}

/// The gradient of an embedding gather (`[V, d]` table at `ids`): each row of `dy` added into the row of its id
/// (ids repeat, so rows accumulate); [`PAD_ID`] positions contribute nothing.
pub fn embedding_backward(ids: &[u32], dy: &[f64], vocab: usize, d: usize) -> Vec<f64> {
    let mut dt = vec![0.0; vocab * d];
    for (&id, g) in ids.iter().zip(dy.chunks(d.max(1))) {
        if id != PAD_ID {
            let r = id as usize * d;
            for (t, v) in dt[r..r + d].iter_mut().zip(g) {
                *t += v;
            }
        }
    }
    dt
}

/// Softmax cross-entropy over rows of `[n, v]` logits against `targets` (a [`PAD_ID`] target: not a target),
/// scaled by `scale` (training passes 1 / the number of targets): returns `(scale · Σ (lse − logit[t]),
/// scale · (softmax − one_hot(t)))`, the gradient zero on rows without a target.
pub fn cross_entropy(logits: &[f64], v: usize, targets: &[u32], scale: f64) -> (f64, Vec<f64>) {
    let mut loss = 0.0;
    let mut d = vec![0.0; logits.len()];
    for ((row, dr), &t) in logits
        .chunks(v.max(1))
        .zip(d.chunks_mut(v.max(1)))
        .zip(targets)
    {
        if t == PAD_ID {
            continue;
        }
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|x| (x - max).exp()).sum();
        let lse = max + sum.ln();
        loss += scale * (lse - row[t as usize]);
        for (j, (o, x)) in dr.iter_mut().zip(row).enumerate() {
            *o = scale * ((x - lse).exp() - f64::from(u8::from(j == t as usize)));
        }
    }
    (loss, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference as r;
    use crate::reference::test_values as values;

    /// Central differences of `L(x) = Σ w·f(x)` against the analytic `dL/dx`.
    fn check(what: &str, x: &[f64], w: &[f64], f: impl Fn(&[f64]) -> Vec<f64>, grad: &[f64]) {
        let h = 1e-6;
        let loss = |x: &[f64]| f(x).iter().zip(w).map(|(a, b)| a * b).sum::<f64>();
        let scale = 1.0 + grad.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        for i in 0..x.len() {
            let (mut xp, mut xm) = (x.to_vec(), x.to_vec());
            xp[i] += h;
            xm[i] -= h;
            let fd = (loss(&xp) - loss(&xm)) / (2.0 * h);
            assert!(
                (fd - grad[i]).abs() <= 1e-6 * scale,
                "{what}: element {i}: finite difference {fd}, analytic {}",
                grad[i]
            );
        }
    }

    #[test]
    fn unary_and_geglu_match_finite_differences() {
        // Away from ReLU's kink at 0.
        let x: Vec<f64> = values(24, 1, -3.0, 3.0)
            .into_iter()
            .map(|v| if v.abs() < 1e-3 { 0.5 } else { v })
            .collect();
        let w = values(24, 2, -1.0, 1.0);
        for op in [
            UnaryOp::Gelu,
            UnaryOp::Relu,
            UnaryOp::Exp,
            UnaryOp::Tanh,
            UnaryOp::Neg,
        ] {
            let g = unary_backward(op, &x, &w);
            check(&format!("{op:?}"), &x, &w, |x| r::unary(op, x), &g);
        }
        let f = 4;
        let x = values(3 * 2 * f, 3, -2.0, 2.0);
        let w = values(3 * f, 4, -1.0, 1.0);
        check(
            "geglu",
            &x,
            &w,
            |x| r::geglu(x, f),
            &geglu_backward(&x, f, &w),
        );
    }

    #[test]
    fn layer_norm_matches_finite_differences_for_x_gamma_and_beta() {
        let (rows, d, eps) = (3, 7, 1e-5);
        let x = values(rows * d, 5, -2.0, 3.0);
        let (gamma, beta) = (values(d, 6, 0.5, 1.5), values(d, 7, -1.0, 1.0));
        let w = values(rows * d, 8, -1.0, 1.0);
        let (mean, rstd) = layer_norm_stats(&x, d, eps);
        let (dx, dg, db) = layer_norm_backward(&x, d, &gamma, &mean, &rstd, &w);
        check(
            "dx",
            &x,
            &w,
            |x| r::layer_norm(x, d, &gamma, &beta, eps),
            &dx,
        );
        check(
            "dgamma",
            &gamma,
            &w,
            |g| r::layer_norm(&x, d, g, &beta, eps),
            &dg,
        );
        check(
            "dbeta",
            &beta,
            &w,
            |b| r::layer_norm(&x, d, &gamma, b, eps),
            &db,
        );
    }

    #[test]
    fn bias_embedding_and_cross_entropy_match_finite_differences() {
        let (rows, d) = (5, 3);
        let w = values(rows * d, 9, -1.0, 1.0);
        let bias = values(d, 10, -1.0, 1.0);
        let x = values(rows * d, 11, -1.0, 1.0);
        check(
            "bias",
            &bias,
            &w,
            |b| r::binary(crate::backend::BinaryOp::Add, &x, b),
            &sum_rows(&w, d),
        );
        let (v, ids) = (4, [2u32, 0, 2, PAD_ID, 3]);
        let table = values(v * d, 12, -1.0, 1.0);
        check(
            "embedding",
            &table,
            &w,
            |t| r::embedding(t, d, &ids),
            &embedding_backward(&ids, &w, v, d),
        );
        let (n, v) = (4, 6);
        let logits = values(n * v, 13, -3.0, 3.0);
        let targets = [1u32, PAD_ID, 5, 0];
        let (loss, dl) = cross_entropy(&logits, v, &targets, 0.25);
        // The loss against the forward references: -mean log-softmax at the targets.
        let ls = r::softmax(&logits, v, true);
        let want: f64 = [0usize, 2, 3]
            .iter()
            .map(|&i| -ls[i * v + targets[i] as usize])
            .sum::<f64>()
            * 0.25;
        assert!((loss - want).abs() < 1e-12, "{loss} vs {want}");
        check(
            "cross_entropy",
            &logits,
            &[1.0],
            |l| vec![cross_entropy(l, v, &targets, 0.25).0],
            &dl,
        );
        assert!(
            dl[v..2 * v].iter().all(|&g| g == 0.0),
            "no gradient where there is no target"
        );
    }
}
