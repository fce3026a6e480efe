//! The checks of the conformance suite, one file per op family of [`crate::Backend`] (and one for the error
//! contract). Each check returns `Err(message)` on the first mismatch, with the case that failed.

mod attention;
mod backward;
mod elementwise;
mod errors;
mod gather_conv;
mod layout;
mod matmul;
mod memory;
mod norm;
mod optim;

pub use attention::*;
pub use backward::*;
pub use elementwise::*;
pub use errors::*;
pub use gather_conv::*;
pub use layout::*;
pub use matmul::*;
pub use memory::*;
pub use norm::*;
pub use optim::*;

#[allow(unused_imports)]
use std::sync::Arc;

#[allow(unused_imports)]
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

fn dims_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..9, 1..4)
}

/// Every unary op.
fn unary_ops() -> impl Strategy<Value = UnaryOp> {
    prop_oneof![
        Just(UnaryOp::Gelu),
        Just(UnaryOp::Relu),
        Just(UnaryOp::Exp),
        Just(UnaryOp::Tanh),
        Just(UnaryOp::Neg)
    ]
}
