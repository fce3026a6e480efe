//! Matrix products, linear maps (fused activations, 16-bit weights) and weights laid out for acting.

#[allow(unused_imports)]
use super::*;

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

/// A weight laid out by [`crate::MatmulOps::pack_weight`] (where the backend has a layout of its own), at either
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
