//! `gato check`: verify the selected backend against the f64 reference and measure its GEMM throughput.

use std::sync::Arc;

use gato_core::diagnostics::{check_ops, measure_gemm};
use gato_core::{Backend, Error, Result};
use serde_json::json;

use crate::output;

pub fn run(backend: &Arc<dyn Backend>, size: usize, as_json: bool) -> Result<()> {
    if size == 0 || size > 16384 {
        return Err(Error::OutOfRange {
            op: "gato check",
            what: "--size".into(),
            value: size.to_string(),
            allowed: "[1, 16384]".into(),
        });
    }
    let checks = check_ops(backend.as_ref())?;
    let gemm = measure_gemm(backend.as_ref(), size, size, size, 5)?;
    let passed = checks.iter().all(|c| c.passed);
    if as_json {
        output::json(&json!({
            "backend": backend.name(),
            "device": backend.device_description(),
            "checks": checks,
            "gemm": gemm,
            "passed": passed,
        }));
    } else {
        let mut s = format!(
            "backend {} ({})\n",
            backend.name(),
            backend.device_description()
        );
        for c in &checks {
            s += &format!(
                "  {:<44} rel. error {:.2e}  (tolerance {:.0e})  {}\n",
                c.op,
                c.error,
                c.tolerance,
                if c.passed { "ok" } else { "FAILED" }
            );
        }
        s += &format!(
            "  f32 GEMM {}x{}x{}: {:.1} ms, {:.1} GFLOP/s\n",
            gemm.m,
            gemm.n,
            gemm.k,
            gemm.seconds * 1e3,
            gemm.gflops
        );
        output::print(&s);
    }
    if passed {
        Ok(())
    } else {
        Err(Error::Backend {
            backend: backend.name().to_string(),
            op: "check",
            detail: "results differ from the f64 reference beyond tolerance".into(),
        })
    }
}
