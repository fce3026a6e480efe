//! The checks of the conformance suite, one function per op family. Each returns `Err(message)` on the first
//! mismatch, with the case that failed.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::Rng;
use crate::backend::{
    AttentionSpec, Backend, BinaryOp, Conv2dSpec, MatmulPrecision, MatmulSpec, UnaryOp,
};
use crate::dtype::{DType, HostData, HostSlice};
use crate::error::Error;
use crate::reference as r;
use crate::shape::Shape;
use crate::tensor::{Storage, Tensor};

/// Random cases per check (override with `GATO_CONFORMANCE_CASES`).
fn cases() -> u32 {
    std::env::var("GATO_CONFORMANCE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

/// Tolerance for f32 results against the f64 reference: `max |got − ref| ≤ TOL · (1 + max |ref|)`.
const TOL: f64 = 2e-5;

type CheckResult = Result<(), TestCaseError>;

fn fail(msg: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(msg.into())
}

fn run<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> CheckResult) -> Result<(), String>
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    runner.run(&strategy, test).map_err(|e| e.to_string())
}

fn up(b: &dyn Backend, data: &[f32], dims: &[usize]) -> Result<Tensor, TestCaseError> {
    b.upload(HostSlice::F32(data), &Shape::from(dims))
        .map_err(|e| fail(e.to_string()))
}

fn wide(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

fn down(b: &dyn Backend, t: &Tensor) -> Result<Vec<f64>, TestCaseError> {
    Ok(b.download(t).map_err(|e| fail(e.to_string()))?.to_f64_vec())
}

fn ok<T>(op: &str, r: crate::error::Result<T>) -> Result<T, TestCaseError> {
    r.map_err(|e| fail(format!("{op} returned an error: {e}")))
}

/// Compare a result tensor with the reference: shape first, then values within `tol`.
fn close(
    b: &dyn Backend,
    what: &str,
    got: &Tensor,
    want: &[f64],
    want_dims: &[usize],
    tol: f64,
) -> CheckResult {
    if got.dims() != want_dims {
        return Err(fail(format!(
            "{what}: shape {:?}, expected {want_dims:?}",
            got.dims()
        )));
    }
    let g = down(b, got)?;
    if g.len() != want.len() {
        return Err(fail(format!(
            "{what}: {} values, expected {}",
            g.len(),
            want.len()
        )));
    }
    let scale = 1.0 + want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (x, y)) in g.iter().zip(want).enumerate() {
        let within = (x - y).abs() <= tol * scale; // false for NaN too
        if !within {
            return Err(fail(format!(
                "{what}: element {i} is {x}, reference {y} (tolerance {})",
                tol * scale
            )));
        }
    }
    Ok(())
}

/// Upload/download round trip for every supported dtype, `download_f32_into`, and `zeros`.
pub fn memory(b: &dyn Backend) -> Result<(), String> {
    run(
        (prop::collection::vec(1usize..5, 0..4), any::<u64>()),
        |(dims, seed)| {
            let n: usize = dims.iter().product();
            let mut rng = Rng::new(seed);
            let f = rng.vec(n, -3.0, 3.0);
            let shape = Shape::from(dims.as_slice());
            let datas = [
                HostData::F32(f.clone()),
                HostData::F16(f.iter().map(|&v| half::f16::from_f32(v)).collect()),
                HostData::BF16(f.iter().map(|&v| half::bf16::from_f32(v)).collect()),
                HostData::U32((0..n).map(|_| rng.next_u64() as u32).collect()),
            ];
            for data in datas {
                if !b.supports_dtype(data.dtype()) {
                    continue;
                }
                let t = ok("upload", b.upload(data.as_slice(), &shape))?;
                prop_assert_eq!(t.dtype(), data.dtype());
                prop_assert_eq!(t.dims(), shape.dims());
                prop_assert_eq!(&ok("download", b.download(&t))?, &data);
                let z = ok("zeros", b.zeros(&shape, data.dtype()))?;
                prop_assert!(down(b, &z)?.iter().all(|&v| v == 0.0));
                // `download_f32_into` replaces what the vector held with the f32 values, and refuses other
                // dtypes, leaving the vector as it was.
                let mut into = vec![7.0f32; 3];
                let got = b.download_f32_into(&t, &mut into);
                match &data {
                    HostData::F32(v) => {
                        ok("download_f32_into", got)?;
                        prop_assert_eq!(&into, v);
                    }
                    _ => {
                        prop_assert!(got.is_err(), "download_f32_into accepted {}", data.dtype());
                        prop_assert_eq!(&into, &vec![7.0f32; 3]);
                    }
                }
            }
            Ok(())
        },
    )
}

/// f32 ↔ f16/bf16 casts round to nearest even like `half`, and widen exactly.
pub fn cast(b: &dyn Backend) -> Result<(), String> {
    run((1usize..300, any::<u64>()), |(n, seed)| {
        let f = Rng::new(seed).vec(n, -70000.0, 70000.0);
        let t = up(b, &f, &[n])?;
        for dt in [DType::F16, DType::BF16] {
            if !b.supports_dtype(dt) {
                continue;
            }
            let c = ok("cast", b.cast(&t, dt))?;
            prop_assert_eq!(c.dtype(), dt);
            let want: Vec<f64> = match dt {
                DType::F16 => f.iter().map(|&v| half::f16::from_f32(v).to_f64()).collect(),
                _ => f
                    .iter()
                    .map(|&v| half::bf16::from_f32(v).to_f64())
                    .collect(),
            };
            let got = down(b, &c)?;
            prop_assert!(got
                .iter()
                .zip(&want)
                .all(|(x, y)| x == y || (x.is_nan() && y.is_nan())));
            let back = ok("cast", b.cast(&c, DType::F32))?;
            let back_v = down(b, &back)?;
            prop_assert!(back_v
                .iter()
                .zip(&want)
                .all(|(x, y)| x == y || (x.is_nan() && y.is_nan())));
        }
        Ok(())
    })
}

fn matmul_case() -> impl Strategy<Value = MatmulCase> {
    (
        prop::collection::vec(1usize..4, 0..3),
        1usize..70,
        1usize..70,
        0usize..70,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(1.0f32), -2.0f32..2.0],
        any::<u64>(),
    )
}

/// Batched / transposed / broadcast matrix products.
pub fn matmul(b: &dyn Backend) -> Result<(), String> {
    matmul_cases(b, matmul_case())
}

/// Products of 1–4 rows against a shared `b`, either side transposed — a decoded token's shapes, which a backend
/// may compute without its general GEMM (the CPU: dot products against a transposed weight such as the output
/// table's rows).
pub fn matmul_few_rows(b: &dyn Backend) -> Result<(), String> {
    let case = (
        prop::collection::vec(1usize..3, 0..2),
        1usize..5,
        1usize..150,
        0usize..70,
        any::<bool>(),
        any::<bool>(),
        Just(false),
        prop_oneof![Just(1.0f32), -2.0f32..2.0],
        any::<u64>(),
    );
    matmul_cases(b, case)
}

type MatmulCase = (Vec<usize>, usize, usize, usize, bool, bool, bool, f32, u64);

fn matmul_cases(b: &dyn Backend, case: impl Strategy<Value = MatmulCase>) -> Result<(), String> {
    run(case, |(batch, m, n, k, ta, tb, b_batched, alpha, seed)| {
        let mut rng = Rng::new(seed);
        let mut ad = batch.clone();
        ad.extend(if ta { [k, m] } else { [m, k] });
        let mut bd = if b_batched { batch.clone() } else { vec![] };
        bd.extend(if tb { [n, k] } else { [k, n] });
        let av = rng.vec(ad.iter().product(), -1.0, 1.0);
        let bv = rng.vec(bd.iter().product(), -1.0, 1.0);
        let spec = MatmulSpec {
            trans_a: ta,
            trans_b: tb,
            alpha,
        };
        let got = ok(
            "matmul",
            b.matmul(&up(b, &av, &ad)?, &up(b, &bv, &bd)?, &spec),
        )?;
        let (want, wd) = r::matmul(&wide(&av), &ad, &wide(&bv), &bd, &spec);
        close(
            b,
            &format!("matmul a{ad:?} b{bd:?} {spec:?}"),
            &got,
            &want,
            &wd,
            TOL * (1.0 + k as f64).sqrt(),
        )
    })
}

/// Random operands of `x · w + bias` (`x: [rows, din]`, `w: [din, dout]`, `bias: [dout]`, all in [−1, 1)).
struct LinearCase {
    rows: usize,
    din: usize,
    dout: usize,
    x: Vec<f32>,
    w: Vec<f32>,
    bias: Vec<f32>,
}

impl LinearCase {
    fn new(rows: usize, din: usize, dout: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        LinearCase {
            rows,
            din,
            dout,
            x: rng.vec(rows * din, -1.0, 1.0),
            w: rng.vec(din * dout, -1.0, 1.0),
            bias: rng.vec(dout, -1.0, 1.0),
        }
    }

    /// `x`, `w` and `bias` uploaded.
    fn upload(&self, b: &dyn Backend) -> Result<(Tensor, Tensor, Tensor), TestCaseError> {
        Ok((
            up(b, &self.x, &[self.rows, self.din])?,
            up(b, &self.w, &[self.din, self.dout])?,
            up(b, &self.bias, &[self.dout])?,
        ))
    }

    /// The f64 reference `x · w (+ bias)` for the weights `w` (given wide, so a narrowed copy can stand in).
    fn reference(&self, w: &[f64], with_bias: bool) -> (Vec<f64>, Vec<usize>) {
        let (want, wd) = r::matmul(
            &wide(&self.x),
            &[self.rows, self.din],
            w,
            &[self.din, self.dout],
            &MatmulSpec::default(),
        );
        if with_bias {
            (r::binary(BinaryOp::Add, &want, &wide(&self.bias)), wd)
        } else {
            (want, wd)
        }
    }
}

/// `x · w + bias`.
pub fn linear(b: &dyn Backend) -> Result<(), String> {
    run(
        (
            1usize..40,
            1usize..70,
            1usize..70,
            any::<bool>(),
            any::<u64>(),
        ),
        |(rows, din, dout, bias, seed)| {
            let case = LinearCase::new(rows, din, dout, seed);
            let (xt, wt, bt) = case.upload(b)?;
            let got = ok("linear", b.linear(&xt, &wt, bias.then_some(&bt)))?;
            let (want, wd) = case.reference(&wide(&case.w), bias);
            close(
                b,
                "linear",
                &got,
                &want,
                &wd,
                TOL * (1.0 + din as f64).sqrt(),
            )
        },
    )
}

/// `act(x · w + bias)` (a possibly fused activation) for every unary op.
pub fn linear_act(b: &dyn Backend) -> Result<(), String> {
    run(
        (
            1usize..100,
            1usize..40,
            1usize..70,
            prop_oneof![
                Just(UnaryOp::Gelu),
                Just(UnaryOp::Relu),
                Just(UnaryOp::Tanh),
                Just(UnaryOp::Neg)
            ],
            any::<u64>(),
        ),
        |(rows, din, dout, act, seed)| {
            let case = LinearCase::new(rows, din, dout, seed);
            let (xt, wt, bt) = case.upload(b)?;
            let got = ok("linear_act", b.linear_act(&xt, &wt, Some(&bt), act))?;
            let (want, wd) = case.reference(&wide(&case.w), true);
            let want = r::unary(act, &want);
            close(
                b,
                &format!("linear_act [{rows}, {din}] · [{din}, {dout}] {act:?}"),
                &got,
                &want,
                &wd,
                TOL * (1.0 + din as f64).sqrt(),
            )
        },
    )
}

/// `x · w + bias` with `w` stored as f16 or bf16 (the narrow-weights path), against the reference on the widened
/// weights. The tolerance allows a backend to round activations to the weight type too (tensor-core GEMMs do).
pub fn linear_half_weights(b: &dyn Backend) -> Result<(), String> {
    run(
        (
            1usize..100,
            1usize..70,
            1usize..70,
            any::<bool>(),
            any::<u64>(),
        ),
        |(rows, din, dout, bf16, seed)| {
            let dtype = if bf16 { DType::BF16 } else { DType::F16 };
            if !b.supports_dtype(dtype) {
                return Ok(());
            }
            let case = LinearCase::new(rows, din, dout, seed);
            let (xt, wt, bt) = case.upload(b)?;
            let narrow = ok("cast", b.cast(&wt, dtype))?;
            let w_wide = ok("download", b.download(&narrow))?.to_f64_vec();
            let got = ok("linear", b.linear(&xt, &narrow, Some(&bt)))?;
            let (want, wd) = case.reference(&w_wide, true);
            close(
                b,
                &format!("linear [{rows}, {din}] · {dtype} [{din}, {dout}]"),
                &got,
                &want,
                &wd,
                1e-2 * (1.0 + din as f64).sqrt(),
            )
        },
    )
}

/// A weight laid out by [`Backend::pack_weight`] (where the backend has a layout of its own), at either
/// [`MatmulPrecision`], behaves as the original: same shape, dtype and values, `linear`/`linear_act` against the
/// reference for one and many rows (more than 256 too), and other ops (cast, download, packing again) accept it.
pub fn pack_weight(b: &dyn Backend) -> Result<(), String> {
    run(
        (
            prop_oneof![Just(1usize), 2usize..60, Just(300usize)],
            1usize..50,
            1usize..150,
            prop_oneof![Just(DType::F32), Just(DType::BF16), Just(DType::F16)],
            prop_oneof![Just(MatmulPrecision::F32), Just(MatmulPrecision::Bf16)],
            any::<u64>(),
        ),
        |(rows, din, dout, dtype, precision, seed)| {
            if !b.supports_dtype(dtype) {
                return Ok(());
            }
            let case = LinearCase::new(rows, din, dout, seed);
            let (xt, wt, bt) = case.upload(b)?;
            let w = ok("cast", b.cast(&wt, dtype))?;
            let Some(packed) = ok("pack_weight", b.pack_weight(&w, precision))? else {
                return Ok(());
            };
            let what =
                format!("packed {dtype} [{din}, {dout}] for {precision} products, {rows} rows");
            prop_assert_eq!(packed.dims(), w.dims(), "{}", what);
            prop_assert_eq!(packed.dtype(), w.dtype(), "{}", what);
            let w_wide = ok("download", b.download(&w))?.to_f64_vec();
            prop_assert_eq!(
                &ok("download", b.download(&packed))?.to_f64_vec(),
                &w_wide,
                "{}: values",
                what
            );
            // bf16 products round x to bf16: a relative error of 2⁻⁹ per value, as the weights' own rounding.
            let tol = if dtype == DType::F32 { TOL } else { 1e-2 } * (1.0 + din as f64).sqrt();
            let (want, wd) = case.reference(&w_wide, true);
            let got = ok("linear", b.linear(&xt, &packed, Some(&bt)))?;
            close(b, &format!("linear, {what}"), &got, &want, &wd, tol)?;
            let got = ok(
                "linear_act",
                b.linear_act(&xt, &packed, Some(&bt), UnaryOp::Gelu),
            )?;
            close(
                b,
                &format!("linear_act, {what}"),
                &got,
                &r::unary(UnaryOp::Gelu, &want),
                &wd,
                tol,
            )?;
            let again = ok("pack_weight", b.pack_weight(&packed, precision))?;
            prop_assert!(again.is_some(), "{}: packing a packed weight", what);
            let cast = ok("cast", b.cast(&packed, DType::F32))?;
            prop_assert_eq!(
                &ok("download", b.download(&cast))?.to_f64_vec(),
                &w_wide,
                "{}: cast",
                what
            );
            Ok(())
        },
    )
}

fn dims_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..9, 1..4)
}

/// Every unary op.
pub fn unary(b: &dyn Backend) -> Result<(), String> {
    let ops = prop_oneof![
        Just(UnaryOp::Gelu),
        Just(UnaryOp::Relu),
        Just(UnaryOp::Exp),
        Just(UnaryOp::Tanh),
        Just(UnaryOp::Neg)
    ];
    run((ops, dims_strategy(), any::<u64>()), |(op, dims, seed)| {
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
    })
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

/// LayerNorm over the last dim.
pub fn layer_norm(b: &dyn Backend) -> Result<(), String> {
    run(
        (1usize..20, 1usize..200, any::<u64>()),
        |(rows, d, seed)| {
            let mut rng = Rng::new(seed);
            let shift = rng.uniform(-5.0, 5.0);
            let x = rng.vec(rows * d, shift - 2.0, shift + 2.0);
            let (g, be) = (rng.vec(d, 0.5, 1.5), rng.vec(d, -1.0, 1.0));
            let got = ok(
                "layer_norm",
                b.layer_norm(
                    &up(b, &x, &[rows, d])?,
                    &up(b, &g, &[d])?,
                    &up(b, &be, &[d])?,
                    1e-5,
                ),
            )?;
            close(
                b,
                "layer_norm",
                &got,
                &r::layer_norm(&wide(&x), d, &wide(&g), &wide(&be), 1e-5),
                &[rows, d],
                1e-4,
            )
        },
    )
}

/// GroupNorm on NCHW.
pub fn group_norm(b: &dyn Backend) -> Result<(), String> {
    run(
        (
            1usize..3,
            1usize..5,
            1usize..4,
            1usize..6,
            1usize..6,
            any::<u64>(),
        ),
        |(n, groups, cg, h, w, seed)| {
            let mut rng = Rng::new(seed);
            let c = groups * cg;
            let dims = [n, c, h, w];
            let x = rng.vec(dims.iter().product(), -2.0, 2.0);
            let (g, be) = (rng.vec(c, 0.5, 1.5), rng.vec(c, -1.0, 1.0));
            let got = ok(
                "group_norm",
                b.group_norm(
                    &up(b, &x, &dims)?,
                    groups,
                    &up(b, &g, &[c])?,
                    &up(b, &be, &[c])?,
                    1e-5,
                ),
            )?;
            let want = r::group_norm(&wide(&x), &dims, groups, &wide(&g), &wide(&be), 1e-5);
            close(
                b,
                &format!("group_norm {dims:?} groups {groups}"),
                &got,
                &want,
                &dims,
                1e-4,
            )
        },
    )
}

fn softmax_check(b: &dyn Backend, log: bool) -> Result<(), String> {
    run(
        (dims_strategy(), 1.0f32..30.0, any::<u64>()),
        move |(dims, range, seed)| {
            let x = Rng::new(seed).vec(dims.iter().product(), -range, range);
            let t = up(b, &x, &dims)?;
            let got = ok(
                "softmax",
                if log {
                    b.log_softmax(&t)
                } else {
                    b.softmax(&t)
                },
            )?;
            let d = *dims.last().unwrap_or(&1);
            close(
                b,
                "softmax",
                &got,
                &r::softmax(&wide(&x), d, log),
                &dims,
                TOL,
            )
        },
    )
}

/// Softmax over the last dim.
pub fn softmax(b: &dyn Backend) -> Result<(), String> {
    softmax_check(b, false)
}

/// Log-softmax over the last dim.
pub fn log_softmax(b: &dyn Backend) -> Result<(), String> {
    softmax_check(b, true)
}

/// Causal / non-causal attention with a query offset (KV cache) and per-sequence key padding.
pub fn attention(b: &dyn Backend) -> Result<(), String> {
    let case = (
        1usize..3,
        1usize..4,
        1usize..10,
        0usize..6,
        1usize..17,
        1usize..17,
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    );
    attention_cases(b, case)
}

/// Attention with more queries than one tile of a tiled kernel (64 and more rows, a KV-cache offset up to 40).
pub fn attention_long(b: &dyn Backend) -> Result<(), String> {
    let case = (
        1usize..2,
        1usize..3,
        60usize..140,
        0usize..40,
        8usize..33,
        8usize..33,
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    );
    attention_cases(b, case)
}

/// Attention with head widths that are multiples of 16 (Gato's is 32), which a backend may give a kernel of their
/// own: tiles of a few to over 64 queries, key counts that are and are not whole 16-key strips.
pub fn attention_wide_heads(b: &dyn Backend) -> Result<(), String> {
    let width = prop_oneof![Just(16usize), Just(32usize), Just(48usize)];
    let case = (
        1usize..3,
        1usize..3,
        5usize..80,
        0usize..40,
        width.clone(),
        width,
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    );
    attention_cases(b, case)
}

type AttentionCase = (usize, usize, usize, usize, usize, usize, bool, bool, u64);

fn attention_cases(
    b: &dyn Backend,
    case: impl Strategy<Value = AttentionCase>,
) -> Result<(), String> {
    run(case, |(bs, h, tq, extra, d, dv, causal, padded, seed)| {
        let mut rng = Rng::new(seed);
        let tk = tq + extra;
        let q = rng.vec(bs * h * tq * d, -1.5, 1.5);
        let k = rng.vec(bs * h * tk * d, -1.5, 1.5);
        let v = rng.vec(bs * h * tk * dv, -1.0, 1.0);
        let kv_len = padded.then(|| (0..bs).map(|_| rng.below(tk + 1)).collect::<Vec<_>>());
        let spec = AttentionSpec {
            scale: 1.0 / (d as f32).sqrt(),
            causal,
            q_offset: extra,
            kv_len,
        };
        let got = ok(
            "attention",
            b.attention(
                &up(b, &q, &[bs, h, tq, d])?,
                &up(b, &k, &[bs, h, tk, d])?,
                &up(b, &v, &[bs, h, tk, dv])?,
                &spec,
            ),
        )?;
        let want = r::attention(
            &wide(&q),
            &wide(&k),
            &wide(&v),
            [bs, h, tq, tk, d, dv],
            &spec,
        );
        close(
            b,
            &format!("attention b{bs} h{h} tq{tq} tk{tk} d{d} dv{dv} {spec:?}"),
            &got,
            &want,
            &[bs, h, tq, dv],
            1e-4,
        )
    })
}

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

/// A storage type no backend knows, to check that foreign tensors are rejected.
#[derive(Debug)]
struct ForeignStorage;

impl Storage for ForeignStorage {
    fn backend_name(&self) -> &str {
        "foreign"
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
    fn size_in_bytes(&self) -> usize {
        0
    }
}

/// The error contract: every malformed call returns the right `Err` (never panics, never returns data).
pub fn errors(b: &dyn Backend) -> Result<(), String> {
    let e = |what: &str,
             res: crate::error::Result<Tensor>,
             want: fn(&Error) -> bool|
     -> Result<(), String> {
        match res {
            Ok(t) => Err(format!("{what}: expected an error, got {t:?}")),
            Err(err) if want(&err) => Ok(()),
            Err(err) => Err(format!("{what}: wrong error kind: {err}")),
        }
    };
    let shape = |err: &Error| matches!(err, Error::Shape { .. });
    let t = |data: &[f32], dims: &[usize]| {
        b.upload(HostSlice::F32(data), &Shape::from(dims))
            .map_err(|e| e.to_string())
    };
    let x23 = t(&[1.0; 6], &[2, 3])?;
    let x45 = t(&[1.0; 20], &[4, 5])?;
    let v3 = t(&[1.0; 3], &[3])?;
    let v4 = t(&[1.0; 4], &[4])?;
    let x4d = t(&[1.0; 16], &[1, 1, 4, 4])?;
    let ids = b
        .upload(HostSlice::U32(&[0, 7]), &Shape::from([2]))
        .map_err(|e| e.to_string())?;

    e(
        "upload with wrong length",
        b.upload(HostSlice::F32(&[1.0; 5]), &Shape::from([2, 3])),
        shape,
    )?;
    e(
        "matmul inner mismatch",
        b.matmul(&x23, &x45, &MatmulSpec::default()),
        shape,
    )?;
    e(
        "matmul rank 1",
        b.matmul(&v3, &x23, &MatmulSpec::default()),
        shape,
    )?;
    e(
        "linear bias of the wrong width",
        b.linear(&x23, &t(&[1.0; 12], &[3, 4])?, Some(&v3)),
        shape,
    )?;
    let mut dst = x45.clone();
    e(
        "slice_assign past the end",
        b.slice_assign(&mut dst, &x23, 0, 3).map(|_| dst.clone()),
        |err| matches!(err, Error::Shape { .. } | Error::OutOfRange { .. }),
    )?;
    e(
        "slice_assign range past the end",
        b.slice_assign(&mut dst, &t(&[1.0; 10], &[2, 5])?, 0, 3)
            .map(|_| dst.clone()),
        |err| matches!(err, Error::OutOfRange { .. }),
    )?;
    e(
        "binary non-suffix broadcast",
        b.binary(BinaryOp::Add, &x23, &v4),
        shape,
    )?;
    e(
        "layer_norm gamma size",
        b.layer_norm(&x23, &v4, &v3, 1e-5),
        shape,
    )?;
    e(
        "group_norm groups not dividing C",
        b.group_norm(&x4d, 0, &t(&[1.0], &[1])?, &t(&[0.0], &[1])?, 1e-5),
        |err| matches!(err, Error::OutOfRange { .. }),
    )?;
    e(
        "group_norm rank",
        b.group_norm(&x23, 1, &v3, &v3, 1e-5),
        shape,
    )?;
    e("geglu odd width", b.geglu(&x23), shape)?;
    e(
        "attention rank",
        b.attention(
            &x23,
            &x23,
            &x23,
            &AttentionSpec {
                scale: 1.0,
                ..Default::default()
            },
        ),
        shape,
    )?;
    e(
        "attention kv_len too long",
        b.attention(
            &x4d,
            &x4d,
            &x4d,
            &AttentionSpec {
                scale: 1.0,
                kv_len: Some(vec![5]),
                ..Default::default()
            },
        ),
        |err| matches!(err, Error::OutOfRange { .. }),
    )?;
    e(
        "attention NaN scale",
        b.attention(
            &x4d,
            &x4d,
            &x4d,
            &AttentionSpec {
                scale: f32::NAN,
                ..Default::default()
            },
        ),
        |err| matches!(err, Error::NonFinite { .. }),
    )?;
    // A backend that runs asynchronously may report a bad id at the next download instead of at the call;
    // either way no data comes back.
    e(
        "embedding id out of range",
        b.embedding(&x45, &ids)
            .and_then(|y| b.download(&y).map(|_| y)),
        |err| matches!(err, Error::OutOfRange { value, .. } if value == "7"),
    )?;
    e("embedding f32 ids", b.embedding(&x45, &v3), |err| {
        matches!(err, Error::DType { .. })
    })?;
    e(
        "conv2d channel mismatch",
        b.conv2d(
            &x4d,
            &t(&[1.0; 18], &[1, 2, 3, 3])?,
            None,
            &Conv2dSpec::default(),
        ),
        shape,
    )?;
    e(
        "conv2d kernel larger than input",
        b.conv2d(
            &x4d,
            &t(&[1.0; 25], &[1, 1, 5, 5])?,
            None,
            &Conv2dSpec::default(),
        ),
        shape,
    )?;
    e(
        "conv2d stride 0",
        b.conv2d(
            &x4d,
            &t(&[1.0; 9], &[1, 1, 3, 3])?,
            None,
            &Conv2dSpec {
                stride: 0,
                padding: 0,
            },
        ),
        |err| matches!(err, Error::OutOfRange { .. }),
    )?;
    e("concat mismatched dims", b.concat(&[&x23, &x45], 0), shape)?;
    e("concat empty", b.concat(&[], 0), |err| {
        matches!(err, Error::InvalidArgument { .. })
    })?;
    e(
        "concat mixed dtypes",
        b.concat(&[&v3, &ids.reshape([2]).map_err(|e| e.to_string())?], 0),
        |err| matches!(err, Error::DType { .. } | Error::Shape { .. }),
    )?;
    e("slice past end", b.slice(&x23, 1, 2, 2), |err| {
        matches!(err, Error::OutOfRange { .. })
    })?;
    e("slice bad axis", b.slice(&x23, 2, 0, 1), |err| {
        matches!(err, Error::OutOfRange { .. })
    })?;
    e(
        "permute not a permutation",
        b.permute(&x23, &[1, 1]),
        |err| matches!(err, Error::InvalidArgument { .. }),
    )?;
    e("unary on u32", b.unary(UnaryOp::Exp, &ids), |err| {
        matches!(err, Error::DType { .. })
    })?;
    if b.supports_dtype(DType::U32) {
        e("cast u32 to f32", b.cast(&ids, DType::F32), |err| {
            matches!(err, Error::DType { .. })
        })?;
    }
    let foreign = Tensor::from_storage(Shape::from([2, 3]), DType::F32, Arc::new(ForeignStorage));
    e("foreign tensor", b.unary(UnaryOp::Neg, &foreign), |err| {
        matches!(err, Error::BackendMismatch { .. })
    })?;
    e(
        "foreign tensor in matmul",
        b.matmul(
            &foreign,
            &x23.reshape([3, 2]).map_err(|e| e.to_string())?,
            &MatmulSpec::default(),
        ),
        |err| matches!(err, Error::BackendMismatch { .. }),
    )?;
    match b.download(&foreign) {
        Err(Error::BackendMismatch { .. }) => Ok(()),
        other => Err(format!(
            "download of a foreign tensor: expected BackendMismatch, got {other:?}"
        )),
    }
}
