//! The f64 gradient of scaled dot-product attention (paper §2.2), flash-style: the forward's per-row
//! log-sum-exp of the scores is all the backward needs to rebuild each row's probabilities.
//!
//! With `S = scale·Q·Kᵀ` (masked entries −∞), `P = softmax(S)` by row, `O = P·V`, and `Dᵢ = Σₓ dOᵢₓ·Oᵢₓ`:
//! `dV = Pᵀ·dO`, `dS = P ⊙ (dO·Vᵀ − D)`, `dQ = scale·dS·K`, `dK = scale·dSᵀ·Q`.

use crate::backend::AttentionSpec;

fn visible(spec: &AttentionSpec, bi: usize, i: usize, j: usize) -> bool {
    (!spec.causal || j <= spec.q_offset + i) && spec.kv_len.as_ref().is_none_or(|l| j < l[bi])
}

fn score(q: &[f64], k: &[f64], qi: usize, kj: usize, d: usize, scale: f64) -> f64 {
    scale * (0..d).map(|x| q[qi * d + x] * k[kj * d + x]).sum::<f64>()
}

/// Per query row (`[B, H, Tq]`), the log-sum-exp of its visible scores; −∞ for a row that sees no key.
pub fn attention_lse(q: &[f64], k: &[f64], dims: [usize; 6], spec: &AttentionSpec) -> Vec<f64> {
    let [b, h, tq, tk, d, _] = dims;
    let mut lse = vec![f64::NEG_INFINITY; b * h * tq];
    for bi in 0..b {
        for hi in 0..h {
            let bh = bi * h + hi;
            for i in 0..tq {
                let s: Vec<f64> = (0..tk)
                    .filter(|&j| visible(spec, bi, i, j))
                    .map(|j| score(q, k, bh * tq + i, bh * tk + j, d, spec.scale as f64))
                    .collect();
                if let Some(max) = s.iter().cloned().reduce(f64::max) {
                    lse[bh * tq + i] = max + s.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
                }
            }
        }
    }
    lse
}

/// `(dq, dk, dv)` of attention from the inputs, the forward's output `o`, its `lse` and `dout`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    o: &[f64],
    lse: &[f64],
    dout: &[f64],
    dims: [usize; 6],
    spec: &AttentionSpec,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let [b, h, tq, tk, d, dv] = dims;
    let scale = spec.scale as f64;
    let (mut dq, mut dk, mut dvv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    for bi in 0..b {
        for hi in 0..h {
            let bh = bi * h + hi;
            for i in 0..tq {
                let row = bh * tq + i;
                if lse[row] == f64::NEG_INFINITY {
                    continue;
                }
                let di: f64 = (0..dv).map(|x| dout[row * dv + x] * o[row * dv + x]).sum();
                for j in (0..tk).filter(|&j| visible(spec, bi, i, j)) {
                    let col = bh * tk + j;
                    let p = (score(q, k, row, col, d, scale) - lse[row]).exp();
                    let dp: f64 = (0..dv).map(|x| dout[row * dv + x] * v[col * dv + x]).sum();
                    let ds = p * (dp - di);
                    for x in 0..dv {
                        dvv[col * dv + x] += p * dout[row * dv + x];
                    }
                    for x in 0..d {
                        dq[row * d + x] += scale * ds * k[col * d + x];
                        dk[col * d + x] += scale * ds * q[row * d + x];
                    }
                }
            }
        }
    }
    (dq, dk, dvv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference as r;

    fn values(n: usize, seed: u64) -> Vec<f64> {
        crate::reference::test_values(n, seed, -1.0, 1.0)
    }

    /// Central differences of `Σ w·attention(q, k, v)` for each of q, k and v, causal with a cache offset and a
    /// padded sequence (one of whose rows sees no key).
    #[test]
    fn attention_backward_matches_finite_differences() {
        let dims = [2, 2, 3, 5, 4, 3];
        let [b, h, tq, tk, d, dv] = dims;
        let spec = AttentionSpec {
            scale: 0.7,
            causal: true,
            q_offset: 1,
            kv_len: Some(vec![5, 0]),
        };
        let (q, k, v) = (
            values(b * h * tq * d, 1),
            values(b * h * tk * d, 2),
            values(b * h * tk * dv, 3),
        );
        let w = values(b * h * tq * dv, 4);
        let o = r::attention(&q, &k, &v, dims, &spec);
        let lse = attention_lse(&q, &k, dims, &spec);
        let (dq, dk, dvv) = attention_backward(&q, &k, &v, &o, &lse, &w, dims, &spec);
        let loss = |q: &[f64], k: &[f64], v: &[f64]| {
            r::attention(q, k, v, dims, &spec)
                .iter()
                .zip(&w)
                .map(|(a, b)| a * b)
                .sum::<f64>()
        };
        let h_ = 1e-6;
        for (name, grad, which) in [("dq", &dq, 0), ("dk", &dk, 1), ("dv", &dvv, 2)] {
            for i in 0..grad.len() {
                let (mut a, mut bm) = (
                    [q.clone(), k.clone(), v.clone()],
                    [q.clone(), k.clone(), v.clone()],
                );
                a[which][i] += h_;
                bm[which][i] -= h_;
                let fd = (loss(&a[0], &a[1], &a[2]) - loss(&bm[0], &bm[1], &bm[2])) / (2.0 * h_);
                assert!(
                    (fd - grad[i]).abs() < 1e-6,
                    "{name}[{i}]: fd {fd}, analytic {}",
                    grad[i]
                );
            }
        }
        // The padded sequence's rows see no key: no gradient flows there.
        assert!(lse[b * h * tq / 2..]
            .iter()
            .all(|&l| l == f64::NEG_INFINITY));
    }
}
