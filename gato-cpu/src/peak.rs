//! This machine's own ceilings, which CPU performance figures are stated against: the FMA peak (independent
//! fused multiply-adds in registers, the widest SIMD the CPU has) and the memory read bandwidth (a sum over a
//! buffer far larger than the caches). Both run on `threads` threads of a private rayon pool.

use std::time::Instant;

use multiversion::multiversion;
use rayon::prelude::*;

use gato_core::error::{Error, Result};

/// A measured ceiling.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Ceiling {
    /// GFLOP/s (FMA peak) or GB/s (read bandwidth).
    pub value: f64,
    /// Threads it ran on.
    pub threads: usize,
}

fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    if threads == 0 {
        return Err(Error::OutOfRange {
            op: "measure",
            what: "threads".into(),
            value: "0".into(),
            allowed: "≥ 1".into(),
        });
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::invalid("measure", e.to_string()))
}

/// FLOPs of one call of [`fma_loop`] with `iters` iterations, and the call itself (returns a value the compiler
/// cannot discard).
#[cfg(target_arch = "x86_64")]
fn fma_loop(iters: usize) -> (f64, f32) {
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was detected just above.
        return (iters as f64 * 12.0 * 16.0 * 2.0, unsafe {
            x86::fma512(iters)
        });
    }
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the features were detected just above.
        return (iters as f64 * 12.0 * 8.0 * 2.0, unsafe {
            x86::fma256(iters)
        });
    }
    (iters as f64 * 32.0 * 2.0, portable_fma(iters))
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_loop(iters: usize) -> (f64, f32) {
    (iters as f64 * 32.0 * 2.0, portable_fma(iters))
}

/// 32 independent multiply-add chains, vectorised by the compiler where it can.
#[multiversion(targets("aarch64+neon"))]
fn portable_fma(iters: usize) -> f32 {
    let mut acc = [0.0f32; 32];
    let (a, b) = (
        std::hint::black_box(0.999_999f32),
        std::hint::black_box(1e-7f32),
    );
    for _ in 0..iters {
        for v in &mut acc {
            *v = v.mul_add(a, b);
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Twelve independent 8-lane FMA chains (enough to cover the FMA latency × throughput of current cores).
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn fma256(iters: usize) -> f32 {
        let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm256_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm256_setzero_ps(); 12];
        for _ in 0..iters {
            for v in &mut acc {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut s = _mm256_setzero_ps();
        for v in acc {
            s = _mm256_add_ps(s, v);
        }
        let mut out = [0.0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), s);
        out.iter().sum()
    }

    /// Twelve independent 16-lane FMA chains.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn fma512(iters: usize) -> f32 {
        let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm512_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm512_setzero_ps(); 12];
        for _ in 0..iters {
            for v in &mut acc {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        let mut s = _mm512_setzero_ps();
        for v in acc {
            s = _mm512_add_ps(s, v);
        }
        _mm512_reduce_add_ps(s)
    }
}

/// f32 FMA peak in GFLOP/s on `threads` threads: every thread runs the FMA loop at once; best of three.
pub fn measure_fma_peak(threads: usize) -> Result<Ceiling> {
    let pool = pool(threads)?;
    let iters = 20_000_000;
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let (flops, sink): (f64, f32) = pool.install(|| {
            (0..threads)
                .into_par_iter()
                .map(|_| fma_loop(iters))
                .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
        });
        std::hint::black_box(sink);
        best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
    }
    Ok(Ceiling {
        value: best,
        threads,
    })
}

/// Sum of a slice with 16 independent lanes (vectorised).
#[multiversion(targets("x86_64+avx512f", "x86_64+avx2", "aarch64+neon"))]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Memory read bandwidth in GB/s on `threads` threads: a parallel sum over `bytes` (at least 64 MiB, far past the
/// caches); best of eight after a first pass that maps the pages.
pub fn measure_read_bandwidth(threads: usize, bytes: usize) -> Result<Ceiling> {
    let pool = pool(threads)?;
    let n = bytes.max(64 << 20) / 4;
    let buf = vec![1.0f32; n];
    let chunk = n.div_ceil(threads * 16).max(1 << 12);
    let mut best = 0.0f64;
    for rep in 0..9 {
        let t = Instant::now();
        let s: f32 = pool.install(|| buf.par_chunks(chunk).map(sum).sum());
        std::hint::black_box(s);
        if rep > 0 {
            best = best.max((n * 4) as f64 / t.elapsed().as_secs_f64() / 1e9);
        }
    }
    Ok(Ceiling {
        value: best,
        threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_are_positive_and_finite() {
        let f = measure_fma_peak(1).unwrap();
        assert!(f.value.is_finite() && f.value > 0.1, "{f:?}");
        let b = measure_read_bandwidth(1, 64 << 20).unwrap();
        assert!(b.value.is_finite() && b.value > 0.1, "{b:?}");
        assert!(measure_fma_peak(0).is_err());
    }
}
