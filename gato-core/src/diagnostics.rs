//! Quick checks of a backend on this machine: a few ops against the f64 [`reference`](crate::reference), and the
//! measured GEMM throughput that performance figures are stated against. Used by `gato check`.

use std::time::Instant;

use serde::Serialize;

use crate::backend::{AttentionSpec, Backend, MatmulSpec, UnaryOp};
use crate::dtype::HostSlice;
use crate::error::Result;
use crate::reference as r;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Result of one op against the reference.
#[derive(Debug, Clone, Serialize)]
pub struct OpCheck {
    /// The op and its shapes.
    pub op: String,
    /// `max |got − ref| / (1 + max |ref|)`.
    pub error: f64,
    /// The tolerance it must stay under.
    pub tolerance: f64,
    /// Whether it did.
    pub passed: bool,
}

/// Deterministic values in [−1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

fn wide(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

fn compare(
    b: &dyn Backend,
    op: String,
    got: &Tensor,
    want: &[f64],
    tolerance: f64,
) -> Result<OpCheck> {
    let g = b.download(got)?.to_f64_vec();
    let scale = 1.0 + want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let err = if g.len() != want.len() {
        f64::INFINITY
    } else {
        g.iter()
            .zip(want)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
            / scale
    };
    Ok(OpCheck {
        op,
        error: err,
        tolerance,
        passed: err <= tolerance,
    })
}

/// Run matmul (plain and transposed), GELU, LayerNorm, softmax and causal attention on fixed inputs and compare
/// each with the f64 reference.
pub fn check_ops(b: &dyn Backend) -> Result<Vec<OpCheck>> {
    let up = |v: &[f32], d: &[usize]| b.upload(HostSlice::F32(v), &Shape::from(d));
    let mut out = Vec::new();
    let (m, k, n) = (67, 45, 33);
    let (av, bv) = (values(m * k, 1), values(k * n, 2));
    let (a, bt) = (up(&av, &[m, k])?, up(&bv, &[k, n])?);
    let (want, _) = r::matmul(
        &wide(&av),
        &[m, k],
        &wide(&bv),
        &[k, n],
        &MatmulSpec::default(),
    );
    out.push(compare(
        b,
        format!("matmul {m}x{k}·{k}x{n}"),
        &b.matmul(&a, &bt, &MatmulSpec::default())?,
        &want,
        1e-5,
    )?);
    let bt_t = up(&bv, &[n, k])?;
    let (want, _) = r::matmul(&wide(&av), &[m, k], &wide(&bv), &[n, k], &MatmulSpec::nt());
    out.push(compare(
        b,
        format!("matmul {m}x{k}·({n}x{k})ᵀ"),
        &b.matmul(&a, &bt_t, &MatmulSpec::nt())?,
        &want,
        1e-5,
    )?);

    let x = values(8 * 96, 3)
        .iter()
        .map(|v| v * 4.0)
        .collect::<Vec<_>>();
    let xt = up(&x, &[8, 96])?;
    out.push(compare(
        b,
        "gelu 8x96".into(),
        &b.unary(UnaryOp::Gelu, &xt)?,
        &r::unary(UnaryOp::Gelu, &wide(&x)),
        1e-5,
    )?);
    let (g, be) = (values(96, 4), values(96, 5));
    let want = r::layer_norm(&wide(&x), 96, &wide(&g), &wide(&be), 1e-5);
    let got = b.layer_norm(&xt, &up(&g, &[96])?, &up(&be, &[96])?, 1e-5)?;
    out.push(compare(b, "layer_norm 8x96".into(), &got, &want, 1e-5)?);
    out.push(compare(
        b,
        "softmax 8x96".into(),
        &b.softmax(&xt)?,
        &r::softmax(&wide(&x), 96, false),
        1e-5,
    )?);

    let (bs, h, t, d) = (2, 3, 20, 16);
    let (q, kk, v) = (
        values(bs * h * t * d, 6),
        values(bs * h * t * d, 7),
        values(bs * h * t * d, 8),
    );
    let spec = AttentionSpec {
        scale: 1.0 / (d as f32).sqrt(),
        causal: true,
        q_offset: 0,
        kv_len: Some(vec![t, t - 5]),
    };
    let dims = [bs, h, t, d];
    let got = b.attention(&up(&q, &dims)?, &up(&kk, &dims)?, &up(&v, &dims)?, &spec)?;
    let want = r::attention(&wide(&q), &wide(&kk), &wide(&v), [bs, h, t, t, d, d], &spec);
    out.push(compare(
        b,
        format!("causal attention {bs}x{h}x{t}x{d}, padded"),
        &got,
        &want,
        1e-5,
    )?);
    Ok(out)
}

/// Measured throughput of an f32 GEMM.
#[derive(Debug, Clone, Serialize)]
pub struct GemmMeasurement {
    /// Rows of A.
    pub m: usize,
    /// Columns of B.
    pub n: usize,
    /// Inner dim.
    pub k: usize,
    /// Best wall time of one product, seconds.
    pub seconds: f64,
    /// `2·m·n·k / seconds / 1e9`.
    pub gflops: f64,
}

/// Time `reps` products of `[m, k] · [k, n]` (after one warm-up) and report the best.
pub fn measure_gemm(
    b: &dyn Backend,
    m: usize,
    n: usize,
    k: usize,
    reps: usize,
) -> Result<GemmMeasurement> {
    let a = b.upload(HostSlice::F32(&values(m * k, 11)), &Shape::from([m, k]))?;
    let bb = b.upload(HostSlice::F32(&values(k * n, 12)), &Shape::from([k, n]))?;
    b.matmul(&a, &bb, &MatmulSpec::default())?;
    b.synchronize()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let c = b.matmul(&a, &bb, &MatmulSpec::default())?;
        b.synchronize()?;
        best = best.min(t.elapsed().as_secs_f64());
        drop(c);
    }
    Ok(GemmMeasurement {
        m,
        n,
        k,
        seconds: best,
        gflops: 2.0 * (m * n * k) as f64 / best / 1e9,
    })
}
