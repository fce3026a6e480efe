//! Naive f64 reference implementations of every backend op (llm.c style): plain loops over explicit indices,
//! written independently of any backend's kernels, so a conformance failure points at the backend. The
//! conformance suite ([`crate::testing`]) and `gato check` compare backends against these.

use crate::backend::{AttentionSpec, BinaryOp, Conv2dSpec, MatmulSpec, UnaryOp};

pub mod attention_backward;
pub mod backward;
pub mod optim;
pub mod patch_backward;

/// Row-major strides of a shape.
pub fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Exact GELU in f64.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

/// `alpha · op(a) · op(b)`, batched as in [`crate::MatmulOps::matmul`].
pub fn matmul(
    a: &[f64],
    ad: &[usize],
    b: &[f64],
    bd: &[usize],
    spec: &MatmulSpec,
) -> (Vec<f64>, Vec<usize>) {
    let (ar, br) = (ad.len(), bd.len());
    let (m, k) = if spec.trans_a {
        (ad[ar - 1], ad[ar - 2])
    } else {
        (ad[ar - 2], ad[ar - 1])
    };
    let n = if spec.trans_b { bd[br - 2] } else { bd[br - 1] };
    let batch: usize = ad[..ar - 2].iter().product();
    let b_batched = br > 2;
    let mut out = vec![0.0; batch * m * n];
    for p in 0..batch {
        let a0 = p * m * k;
        let b0 = if b_batched { p * k * n } else { 0 };
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for kk in 0..k {
                    let av = if spec.trans_a {
                        a[a0 + kk * m + i]
                    } else {
                        a[a0 + i * k + kk]
                    };
                    let bv = if spec.trans_b {
                        b[b0 + j * k + kk]
                    } else {
                        b[b0 + kk * n + j]
                    };
                    s += av * bv;
                }
                out[p * m * n + i * n + j] = spec.alpha as f64 * s;
            }
        }
    }
    let mut dims = ad[..ar - 2].to_vec();
    dims.extend([m, n]);
    (out, dims)
}

/// Elementwise unary op.
pub fn unary(op: UnaryOp, x: &[f64]) -> Vec<f64> {
    x.iter()
        .map(|&v| match op {
            UnaryOp::Gelu => gelu(v),
            UnaryOp::Relu => v.max(0.0),
            UnaryOp::Exp => v.exp(),
            UnaryOp::Tanh => v.tanh(),
            UnaryOp::Neg => -v,
        })
        .collect()
}

/// Broadcast binary op (`b` repeats over `a`).
pub fn binary(op: BinaryOp, a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .enumerate()
        .map(|(i, &x)| {
            let y = b[i % b.len()];
            match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
                BinaryOp::Maximum => x.max(y),
            }
        })
        .collect()
}

/// GEGLU over rows of `2f`.
pub fn geglu(x: &[f64], f: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for row in x.chunks(2 * f) {
        for j in 0..f {
            out.push(gelu(row[j]) * row[f + j]);
        }
    }
    out
}

/// LayerNorm over the last dim `d`.
pub fn layer_norm(x: &[f64], d: usize, gamma: &[f64], beta: &[f64], eps: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(d) {
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
        for j in 0..d {
            out.push((row[j] - mean) / (var + eps).sqrt() * gamma[j] + beta[j]);
        }
    }
    out
}

/// GroupNorm over NCHW `dims` with `groups` groups.
pub fn group_norm(
    x: &[f64],
    dims: &[usize],
    groups: usize,
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
) -> Vec<f64> {
    let (n, c, hw) = (dims[0], dims[1], dims[2] * dims[3]);
    let cg = c / groups;
    let mut out = vec![0.0; x.len()];
    for b in 0..n {
        for g in 0..groups {
            let idx = |ch: usize, p: usize| (b * c + ch) * hw + p;
            let mut vals = Vec::new();
            for ch in g * cg..(g + 1) * cg {
                for p in 0..hw {
                    vals.push(x[idx(ch, p)]);
                }
            }
            let cnt = vals.len() as f64;
            let mean = vals.iter().sum::<f64>() / cnt;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / cnt;
            for ch in g * cg..(g + 1) * cg {
                for p in 0..hw {
                    out[idx(ch, p)] =
                        (x[idx(ch, p)] - mean) / (var + eps).sqrt() * gamma[ch] + beta[ch];
                }
            }
        }
    }
    out
}

/// Softmax (or log-softmax) over the last dim `d`.
pub fn softmax(x: &[f64], d: usize, log: bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(d) {
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
        for &v in row {
            out.push(if log {
                v - max - sum.ln()
            } else {
                (v - max).exp() / sum
            });
        }
    }
    out
}

/// Attention with the full score matrix materialised and masked entries set to −∞.
pub fn attention(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    dims: [usize; 6],
    spec: &AttentionSpec,
) -> Vec<f64> {
    let [b, h, tq, tk, d, dv] = dims;
    let mut out = vec![0.0; b * h * tq * dv];
    for bi in 0..b {
        for hi in 0..h {
            let bh = bi * h + hi;
            let mut scores = vec![vec![f64::NEG_INFINITY; tk]; tq];
            for (i, row) in scores.iter_mut().enumerate() {
                for (j, s) in row.iter_mut().enumerate() {
                    let causal_ok = !spec.causal || j <= spec.q_offset + i;
                    let pad_ok = spec.kv_len.as_ref().is_none_or(|l| j < l[bi]);
                    if causal_ok && pad_ok {
                        let dot: f64 = (0..d)
                            .map(|x| q[(bh * tq + i) * d + x] * k[(bh * tk + j) * d + x])
                            .sum();
                        *s = spec.scale as f64 * dot;
                    }
                }
            }
            for (i, row) in scores.iter().enumerate() {
                let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                if max == f64::NEG_INFINITY {
                    continue; // nothing visible: zeros
                }
                let sum: f64 = row.iter().map(|s| (s - max).exp()).sum();
                for (j, s) in row.iter().enumerate() {
                    let p = (s - max).exp() / sum;
                    for x in 0..dv {
                        out[(bh * tq + i) * dv + x] += p * v[(bh * tk + j) * dv + x];
                    }
                }
            }
        }
    }
    out
}

/// Direct convolution (no im2col): `x: [N, C, H, W]`, `w: [O, C, kh, kw]`.
pub fn conv2d(
    x: &[f64],
    xd: [usize; 4],
    w: &[f64],
    wd: [usize; 4],
    bias: Option<&[f64]>,
    spec: &Conv2dSpec,
) -> (Vec<f64>, [usize; 4]) {
    let [n, c, h, wi] = xd;
    let [o, _, kh, kw] = wd;
    let (s, p) = (spec.stride, spec.padding as isize);
    let oh = (h + 2 * spec.padding - kh) / s + 1;
    let ow = (wi + 2 * spec.padding - kw) / s + 1;
    let mut out = vec![0.0; n * o * oh * ow];
    for b in 0..n {
        for oc in 0..o {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias.map_or(0.0, |bb| bb[oc]);
                    for ic in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * s + ky) as isize - p;
                                let ix = (ox * s + kx) as isize - p;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wi {
                                    let xi = ((b * c + ic) * h + iy as usize) * wi + ix as usize;
                                    acc += x[xi] * w[((oc * c + ic) * kh + ky) * kw + kx];
                                }
                            }
                        }
                    }
                    out[((b * o + oc) * oh + oy) * ow + ox] = acc;
                }
            }
        }
    }
    (out, [n, o, oh, ow])
}

/// Rows of `table` (`[V, D]`) at `ids`.
pub fn embedding(table: &[f64], d: usize, ids: &[u32]) -> Vec<f64> {
    let mut out = Vec::new();
    for &i in ids {
        if i == u32::MAX {
            out.extend(std::iter::repeat_n(0.0, d)); // PAD_ID: a zero row
        } else {
            out.extend_from_slice(&table[i as usize * d..(i as usize + 1) * d]);
        }
    }
    out
}

/// Multi-index of flat index `i` in `dims`.
fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; dims.len()];
    for a in (0..dims.len()).rev() {
        idx[a] = i % dims[a];
        i /= dims[a];
    }
    idx
}

/// Concatenation along `axis`, element by element through multi-indices.
pub fn concat(xs: &[(&[f64], &[usize])], axis: usize) -> (Vec<f64>, Vec<usize>) {
    let mut dims = xs[0].1.to_vec();
    dims[axis] = xs.iter().map(|(_, d)| d[axis]).sum();
    let n: usize = dims.iter().product();
    let out = (0..n)
        .map(|i| {
            let mut idx = unravel(i, &dims);
            let mut t = 0;
            while idx[axis] >= xs[t].1[axis] {
                idx[axis] -= xs[t].1[axis];
                t += 1;
            }
            let s = strides(xs[t].1);
            xs[t].0[idx.iter().zip(&s).map(|(a, b)| a * b).sum::<usize>()]
        })
        .collect();
    (out, dims)
}

/// `x[.., start..start+len, ..]` along `axis`.
pub fn slice(
    x: &[f64],
    dims: &[usize],
    axis: usize,
    start: usize,
    len: usize,
) -> (Vec<f64>, Vec<usize>) {
    let mut od = dims.to_vec();
    od[axis] = len;
    let s = strides(dims);
    let n: usize = od.iter().product();
    let out = (0..n)
        .map(|i| {
            let mut idx = unravel(i, &od);
            idx[axis] += start;
            x[idx.iter().zip(&s).map(|(a, b)| a * b).sum::<usize>()]
        })
        .collect();
    (out, od)
}

/// Output dim `i` is input dim `perm[i]`.
pub fn permute(x: &[f64], dims: &[usize], perm: &[usize]) -> (Vec<f64>, Vec<usize>) {
    let od: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let s = strides(dims);
    let n: usize = od.iter().product();
    let out = (0..n)
        .map(|i| {
            let oi = unravel(i, &od);
            let mut src = 0;
            for (o_axis, &p) in perm.iter().enumerate() {
                src += oi[o_axis] * s[p];
            }
            x[src]
        })
        .collect();
    (out, od)
}

/// `n` deterministic test values in `[lo, hi)` from `seed` (xorshift64), shared by the gradient checks.
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}
