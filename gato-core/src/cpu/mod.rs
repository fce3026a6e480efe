//! The CPU backend (`cpu`): ndarray storage, the `gemm` crate for matrix products, rayon for threads.
//!
//! Each op family's kernel lives in its own file (`matmul` with `small_m` for products of few rows and f16/bf16
//! weights, `bf16_pairs` for bf16 × bf16 products of weights laid out for [`MatmulPrecision::Bf16`],
//! `elementwise`, `math` for the vectorised exp/GELU, `norm`, `attention` with `attention_avx512` for 16-multiple
//! head widths, `conv`, `layout`; `peak` measures the machine's FMA peak and read bandwidth);
//! this file validates arguments with [`crate::ops`], unwraps storage and runs the kernel inside the backend's
//! own rayon pool, so `--threads` bounds every op. Kernels write into an output buffer the backend hands them:
//! `pool` recycles buffers of dropped outputs (up to 4 MiB each), so a warm acting loop allocates nothing.

mod attention;
#[cfg(target_arch = "x86_64")]
mod attention_avx512;
mod bf16_pairs;
mod conv;
mod elementwise;
mod layout;
mod math;
mod matmul;
mod norm;
mod packed;
mod peak;
mod pool;
mod scratch;
mod small_m;
mod storage;
#[cfg(test)]
mod test_util;

use std::sync::Arc;

use half::{bf16, f16};
use ndarray::ArrayD;

pub use packed::CpuPackedWeight;
pub use peak::{measure_fma_peak, measure_read_bandwidth, Ceiling};
pub use storage::{CpuStorage, CPU_BACKEND_NAME};

use crate::backend::{
    AttentionSpec, Backend, BinaryOp, Conv2dSpec, MatmulPrecision, MatmulSpec, UnaryOp,
};
use crate::dtype::{DType, HostData, HostSlice};
use crate::error::{Error, Result};
use crate::ops;
use crate::registry::{BackendEntry, BackendOptions};
use crate::shape::Shape;
use crate::tensor::Tensor;

/// The CPU backend. Cheap to share (`Arc<dyn Backend>`); owns a rayon pool of `threads` workers.
pub struct CpuBackend {
    pool: rayon::ThreadPool,
    threads: usize,
    buffers: pool::BufferPool,
}

impl std::fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CpuBackend {{ threads: {} }}", self.threads)
    }
}

/// Whether products against bf16 weights laid out for [`MatmulPrecision::Bf16`] run as bf16 × bf16 here
/// (`vdpbf16ps`: the CPU has AVX-512F and AVX512_BF16, and `GATO_NO_AVX512` is not set); elsewhere they stay f32.
pub fn bf16_products_available() -> bool {
    bf16_pairs::available()
}

/// SIMD features the GEMM kernels can use on this machine (detected at run time).
pub fn cpu_features() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let mut f = Vec::new();
        if std::arch::is_x86_feature_detected!("avx512f") {
            f.push("avx512f");
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            f.push("avx2");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            f.push("fma");
        }
        if std::arch::is_x86_feature_detected!("avx512bf16") {
            f.push("avx512bf16");
        }
        if f.is_empty() {
            "sse2".to_string()
        } else {
            f.join("+")
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH.to_string()
    }
}

fn available_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl CpuBackend {
    /// A backend with `threads` workers (`None`: all cores). Zero threads is an error.
    pub fn new(threads: Option<usize>) -> Result<Self> {
        let threads = threads.unwrap_or_else(available_threads);
        if threads == 0 {
            return Err(Error::OutOfRange {
                op: "CpuBackend::new",
                what: "threads".into(),
                value: "0".into(),
                allowed: "≥ 1".into(),
            });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("gato-cpu-{i}"))
            .build()
            .map_err(|e| Error::Backend {
                backend: CPU_BACKEND_NAME.into(),
                op: "create",
                detail: e.to_string(),
            })?;
        Ok(CpuBackend {
            pool,
            threads,
            buffers: pool::BufferPool::new(),
        })
    }

    /// Output buffers the backend keeps for reuse, and how many of them no tensor holds now (see the `pool`
    /// module: outputs up to 4 MiB are recycled, so the per-token acting loop allocates nothing).
    pub fn pooled_buffers(&self) -> (usize, usize) {
        self.buffers.counts()
    }

    /// A new f32 tensor of `shape` written by `f` into its zeroed buffer (recycled when small), on the backend's
    /// threads.
    fn compute_f32(
        &self,
        op: &'static str,
        shape: Shape,
        f: impl FnOnce(&mut [f32]) + Send,
    ) -> Result<Tensor> {
        let mut out = self.buffers.take(op, DType::F32, &shape)?;
        let o = out.f32_mut(op)?;
        self.run(|| f(o));
        Ok(self.buffers.finish(shape, out))
    }

    /// A new tensor of `dtype` and `shape` written by `f` (a layout kernel) into its zeroed storage.
    fn compute(
        &self,
        op: &'static str,
        dtype: DType,
        shape: Shape,
        f: impl FnOnce(&mut CpuStorage) -> std::result::Result<(), String>,
    ) -> Result<Tensor> {
        let mut out = self.buffers.take(op, dtype, &shape)?;
        f(out.storage_mut(op)?).map_err(|e| internal(op, e))?;
        Ok(self.buffers.finish(shape, out))
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The tensor's CPU storage; for a [`CpuPackedWeight`], its original's (every op but `linear`/`linear_act`
    /// reads the original layout).
    fn storage<'a>(&self, op: &'static str, t: &'a Tensor) -> Result<&'a CpuStorage> {
        match t.storage().as_any().downcast_ref::<CpuPackedWeight>() {
            Some(p) => p.original().storage_as::<CpuStorage>(op, CPU_BACKEND_NAME),
            None => t.storage_as::<CpuStorage>(op, CPU_BACKEND_NAME),
        }
    }

    fn f32s<'a>(&self, op: &'static str, name: &str, t: &'a Tensor) -> Result<&'a [f32]> {
        match self.storage(op, t)? {
            CpuStorage::F32(a) => a
                .as_slice()
                .ok_or_else(|| internal(op, "non-contiguous storage")),
            other => Err(Error::DType {
                op,
                detail: format!("`{name}` has dtype {}, expected f32", other.dtype()),
            }),
        }
    }

    /// A matmul's `b` operand or a linear map's weight (`name` in errors): f32, or f16/bf16 weights widened inside
    /// the kernel.
    fn weights<'a>(
        &self,
        op: &'static str,
        name: &str,
        t: &'a Tensor,
    ) -> Result<small_m::Weights<'a>> {
        let contiguous = || internal(op, "non-contiguous storage");
        Ok(match self.storage(op, t)? {
            CpuStorage::F32(a) => small_m::Weights::F32(a.as_slice().ok_or_else(contiguous)?),
            CpuStorage::F16(a) => small_m::Weights::F16(a.as_slice().ok_or_else(contiguous)?),
            CpuStorage::BF16(a) => small_m::Weights::BF16(a.as_slice().ok_or_else(contiguous)?),
            CpuStorage::U32(_) => {
                return Err(Error::DType {
                    op,
                    detail: format!("`{name}` has dtype u32, expected f32, f16 or bf16"),
                })
            }
        })
    }

    fn u32s<'a>(&self, op: &'static str, name: &str, t: &'a Tensor) -> Result<&'a [u32]> {
        match self.storage(op, t)? {
            CpuStorage::U32(a) => a
                .as_slice()
                .ok_or_else(|| internal(op, "non-contiguous storage")),
            other => Err(Error::DType {
                op,
                detail: format!("`{name}` has dtype {}, expected u32", other.dtype()),
            }),
        }
    }

    /// `act(x · w + bias)` with the bias fused into the product and the activation applied to each output block
    /// while it is in cache.
    fn linear_op(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        act: Option<UnaryOp>,
    ) -> Result<Tensor> {
        const OP: &str = "linear";
        let spec = MatmulSpec::default();
        let d = ops::linear_dims(x.shape(), w.shape(), bias.map(|b| b.shape()))?;
        let (xv, wv) = (self.f32s(OP, "x", x)?, self.weights(OP, "w", w)?);
        let bv = bias.map(|b| self.f32s(OP, "bias", b)).transpose()?;
        if let Some(p) = w.storage().as_any().downcast_ref::<CpuPackedWeight>() {
            if p.dims() == (d.k, d.n) {
                let rows = d.batch * d.m;
                return self.compute_f32(OP, d.out.clone(), |out| {
                    p.product(out, xv, rows, spec.alpha, bv, act)
                });
            }
        }
        self.compute_f32(OP, d.out.clone(), |out| {
            matmul::matmul(xv, wv, &d, &spec, self.threads, bv, act, out)
        })
    }

    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.pool.install(f)
    }
}

fn internal(op: &'static str, detail: impl Into<String>) -> Error {
    Error::Backend {
        backend: CPU_BACKEND_NAME.into(),
        op,
        detail: detail.into(),
    }
}

fn wrap(op: &'static str, shape: Shape, storage: CpuStorage) -> Result<Tensor> {
    let dtype = storage.dtype();
    Ok(Tensor::from_storage(shape, dtype, Arc::new(storage))).inspect(|t| {
        debug_assert_eq!(
            t.storage().size_in_bytes(),
            t.elem_count() * dtype.size_in_bytes(),
            "{op}"
        )
    })
}

impl Backend for CpuBackend {
    fn name(&self) -> &str {
        CPU_BACKEND_NAME
    }

    fn device_description(&self) -> String {
        format!("{} threads, {}", self.threads, cpu_features())
    }

    fn supports_dtype(&self, _dtype: DType) -> bool {
        true
    }

    fn scoped(&self, f: &mut (dyn FnMut() -> Result<()> + Send)) -> Result<()> {
        self.pool.install(f)
    }

    fn upload(&self, data: HostSlice<'_>, shape: &Shape) -> Result<Tensor> {
        const OP: &str = "upload";
        let n = shape.checked_elem_count(OP)?;
        if data.len() != n {
            return Err(Error::shape(
                OP,
                format!(
                    "{} values cannot fill shape {shape} ({n} elements)",
                    data.len()
                ),
            ));
        }
        self.compute(OP, data.dtype(), shape.clone(), |out| {
            let copied = match (data, out) {
                (HostSlice::F32(s), CpuStorage::F32(o)) => {
                    o.as_slice_mut().map(|o| o.copy_from_slice(s))
                }
                (HostSlice::F16(s), CpuStorage::F16(o)) => {
                    o.as_slice_mut().map(|o| o.copy_from_slice(s))
                }
                (HostSlice::BF16(s), CpuStorage::BF16(o)) => {
                    o.as_slice_mut().map(|o| o.copy_from_slice(s))
                }
                (HostSlice::U32(s), CpuStorage::U32(o)) => {
                    o.as_slice_mut().map(|o| o.copy_from_slice(s))
                }
                _ => None,
            };
            copied.ok_or_else(|| "output buffer of another dtype or layout".to_string())
        })
    }

    fn download(&self, x: &Tensor) -> Result<HostData> {
        Ok(match self.storage("download", x)? {
            // Storage is always standard layout, so this is a memcpy.
            CpuStorage::F32(a) => HostData::F32(
                a.as_slice()
                    .map_or_else(|| a.iter().copied().collect(), <[f32]>::to_vec),
            ),
            CpuStorage::F16(a) => HostData::F16(
                a.as_slice()
                    .map_or_else(|| a.iter().copied().collect(), <[half::f16]>::to_vec),
            ),
            CpuStorage::BF16(a) => HostData::BF16(
                a.as_slice()
                    .map_or_else(|| a.iter().copied().collect(), <[half::bf16]>::to_vec),
            ),
            CpuStorage::U32(a) => HostData::U32(
                a.as_slice()
                    .map_or_else(|| a.iter().copied().collect(), <[u32]>::to_vec),
            ),
        })
    }

    fn download_f32_into(&self, x: &Tensor, out: &mut Vec<f32>) -> Result<()> {
        let values = self.f32s("download_f32_into", "x", x)?;
        out.clear();
        out.extend_from_slice(values);
        Ok(())
    }

    fn zeros(&self, shape: &Shape, dtype: DType) -> Result<Tensor> {
        const OP: &str = "zeros";
        shape.checked_elem_count(OP)?;
        // Never from the pool: zeros are what in-place writes start from (the KV cache), and a pooled buffer is
        // shared with the pool, so the first write would copy it.
        wrap(OP, shape.clone(), pool::zeroed(dtype, shape))
    }

    fn cast(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        const OP: &str = "cast";
        let src = self.storage(OP, x)?;
        if !(src.dtype().is_float() && dtype.is_float()) && src.dtype() != dtype {
            return Err(Error::DType {
                op: OP,
                detail: format!(
                    "cannot cast {} to {dtype}: only float dtypes convert",
                    src.dtype()
                ),
            });
        }
        // Widen to f32 first, then narrow: exact for f16/bf16 → f32, round-to-nearest-even when narrowing.
        let wide: ArrayD<f32> = match src {
            CpuStorage::F32(a) => a.clone(),
            CpuStorage::F16(a) => a.mapv(f16::to_f32),
            CpuStorage::BF16(a) => a.mapv(bf16::to_f32),
            CpuStorage::U32(a) => return wrap(OP, x.shape().clone(), CpuStorage::U32(a.clone())),
        };
        let storage = match dtype {
            DType::F32 => CpuStorage::F32(wide),
            DType::F16 => CpuStorage::F16(wide.mapv(f16::from_f32)),
            DType::BF16 => CpuStorage::BF16(wide.mapv(bf16::from_f32)),
            DType::U32 => unreachable!("rejected above"),
        };
        wrap(OP, x.shape().clone(), storage)
    }

    fn matmul(&self, a: &Tensor, b: &Tensor, spec: &MatmulSpec) -> Result<Tensor> {
        const OP: &str = "matmul";
        let d = ops::matmul_dims(a.shape(), b.shape(), spec)?;
        let (av, bv) = (self.f32s(OP, "a", a)?, self.weights(OP, "b", b)?);
        self.compute_f32(OP, d.out.clone(), |out| {
            matmul::matmul(av, bv, &d, spec, self.threads, None, None, out)
        })
    }

    fn linear(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        self.linear_op(x, w, bias, None)
    }

    fn pack_weight(&self, w: &Tensor, precision: MatmulPrecision) -> Result<Option<Tensor>> {
        const OP: &str = "pack_weight";
        let values = self.weights(OP, "w", w)?;
        let &[k, n] = w.dims() else {
            return Err(Error::shape(
                OP,
                format!("`w` must be [K, N], got {}", w.shape()),
            ));
        };
        let original = match w.storage().as_any().downcast_ref::<CpuPackedWeight>() {
            Some(p) => p.original().clone(),
            None => w.clone(),
        };
        let packed = self.run(|| CpuPackedWeight::new(original, values, k, n, precision));
        Ok(Some(Tensor::from_storage(
            w.shape().clone(),
            w.dtype(),
            Arc::new(packed),
        )))
    }

    fn linear_act(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        act: UnaryOp,
    ) -> Result<Tensor> {
        self.linear_op(x, w, bias, Some(act))
    }

    fn unary(&self, op: UnaryOp, x: &Tensor) -> Result<Tensor> {
        let xv = self.f32s("unary", "x", x)?;
        self.compute_f32("unary", x.shape().clone(), |out| {
            elementwise::unary(op, xv, out)
        })
    }

    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        const OP: &str = "binary";
        ops::broadcast_dims(OP, a.shape(), b.shape())?;
        let (av, bv) = (self.f32s(OP, "a", a)?, self.f32s(OP, "b", b)?);
        self.compute_f32(OP, a.shape().clone(), |out| {
            elementwise::binary(op, av, bv, out)
        })
    }

    fn affine(&self, x: &Tensor, mul: f32, add: f32) -> Result<Tensor> {
        let xv = self.f32s("affine", "x", x)?;
        self.compute_f32("affine", x.shape().clone(), |out| {
            elementwise::map(xv, out, |v| v * mul + add)
        })
    }

    fn geglu(&self, x: &Tensor) -> Result<Tensor> {
        let (_, f, shape) = ops::geglu_dims(x.shape())?;
        let xv = self.f32s("geglu", "x", x)?;
        self.compute_f32("geglu", shape, |out| elementwise::geglu(xv, f, out))
    }

    fn layer_norm(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Tensor> {
        const OP: &str = "layer_norm";
        let (_, d) = ops::layer_norm_dims(x.shape(), gamma.shape(), beta.shape())?;
        let (xv, g, b) = (
            self.f32s(OP, "x", x)?,
            self.f32s(OP, "gamma", gamma)?,
            self.f32s(OP, "beta", beta)?,
        );
        self.compute_f32(OP, x.shape().clone(), |out| {
            norm::layer_norm(xv, d, g, b, eps, out)
        })
    }

    fn group_norm(
        &self,
        x: &Tensor,
        groups: usize,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<Tensor> {
        const OP: &str = "group_norm";
        let d = ops::group_norm_dims(x.shape(), groups, gamma.shape(), beta.shape())?;
        let (xv, g, b) = (
            self.f32s(OP, "x", x)?,
            self.f32s(OP, "gamma", gamma)?,
            self.f32s(OP, "beta", beta)?,
        );
        self.compute_f32(OP, x.shape().clone(), |out| {
            norm::group_norm(xv, &d, g, b, eps, out)
        })
    }

    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        let d = x.shape().last_dim("softmax")?;
        let xv = self.f32s("softmax", "x", x)?;
        self.compute_f32("softmax", x.shape().clone(), |out| {
            norm::softmax(xv, d, false, out)
        })
    }

    fn log_softmax(&self, x: &Tensor) -> Result<Tensor> {
        let d = x.shape().last_dim("log_softmax")?;
        let xv = self.f32s("log_softmax", "x", x)?;
        self.compute_f32("log_softmax", x.shape().clone(), |out| {
            norm::softmax(xv, d, true, out)
        })
    }

    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        spec: &AttentionSpec,
    ) -> Result<Tensor> {
        const OP: &str = "attention";
        let d = ops::attention_dims(q.shape(), k.shape(), v.shape(), spec)?;
        let (qv, kv, vv) = (
            self.f32s(OP, "q", q)?,
            self.f32s(OP, "k", k)?,
            self.f32s(OP, "v", v)?,
        );
        self.compute_f32(OP, Shape::new([d.b, d.h, d.tq, d.dv]), |out| {
            attention::attention(qv, kv, vv, &d, spec, out)
        })
    }

    fn embedding(&self, table: &Tensor, ids: &Tensor) -> Result<Tensor> {
        const OP: &str = "embedding";
        let (v, d, shape) = ops::embedding_dims(table.shape(), ids.shape())?;
        let (t, idv) = (self.f32s(OP, "table", table)?, self.u32s(OP, "ids", ids)?);
        ops::check_ids(idv, v)?;
        self.compute_f32(OP, shape, |out| {
            if d == 0 {
                return;
            }
            for (row, &id) in out.chunks_exact_mut(d).zip(idv) {
                // PAD_ID rows stay zero.
                if id != ops::PAD_ID {
                    let r = id as usize * d;
                    row.copy_from_slice(&t[r..r + d]);
                }
            }
        })
    }

    fn conv2d(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        spec: &Conv2dSpec,
    ) -> Result<Tensor> {
        const OP: &str = "conv2d";
        let d = ops::conv2d_dims(x.shape(), w.shape(), bias.map(|b| b.shape()), spec)?;
        let (xv, wv) = (self.f32s(OP, "x", x)?, self.f32s(OP, "w", w)?);
        let bv = bias.map(|b| self.f32s(OP, "bias", b)).transpose()?;
        self.compute_f32(OP, Shape::new([d.n, d.o, d.oh, d.ow]), |out| {
            conv::conv2d(xv, wv, bv, &d, self.threads, out)
        })
    }

    fn concat(&self, xs: &[&Tensor], axis: usize) -> Result<Tensor> {
        const OP: &str = "concat";
        let shapes: Vec<&Shape> = xs.iter().map(|t| t.shape()).collect();
        let (shape, _, _) = ops::concat_dims(&shapes, axis)?;
        let dtype = xs[0].dtype();
        let storages = xs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.dtype() != dtype {
                    return Err(Error::DType {
                        op: OP,
                        detail: format!("tensor {i} has dtype {}, tensor 0 has {dtype}", t.dtype()),
                    });
                }
                self.storage(OP, t)
            })
            .collect::<Result<Vec<_>>>()?;
        let with_dims: Vec<(&CpuStorage, &[usize])> = storages
            .iter()
            .zip(xs)
            .map(|(s, t)| (*s, t.dims()))
            .collect();
        self.compute(OP, dtype, shape, |out| {
            layout::concat(&with_dims, axis, out)
        })
    }

    fn slice(&self, x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        const OP: &str = "slice";
        let (shape, _, _, _) = ops::slice_dims(x.shape(), axis, start, len)?;
        let src = self.storage(OP, x)?;
        self.compute(OP, x.dtype(), shape, |out| {
            layout::slice(src, x.dims(), axis, start, len, out)
        })
    }

    fn slice_assign(
        &self,
        dst: &mut Tensor,
        src: &Tensor,
        axis: usize,
        start: usize,
    ) -> Result<()> {
        const OP: &str = "slice_assign";
        let plan = ops::slice_assign_dims(dst, src, axis, start)?;
        let src_storage = self.storage(OP, src)?;
        let target =
            dst.storage_for_write::<CpuStorage>(OP, CPU_BACKEND_NAME, |s| Ok(s.clone()))?;
        layout::write_block(target, src_storage, plan, start).map_err(|e| internal(OP, e))
    }

    fn permute(&self, x: &Tensor, perm: &[usize]) -> Result<Tensor> {
        const OP: &str = "permute";
        let shape = ops::permute_dims(x.shape(), perm)?;
        let src = self.storage(OP, x)?;
        self.compute(OP, x.dtype(), shape, |out| {
            layout::permute(src, x.dims(), perm, out)
        })
    }
}

fn probe() -> std::result::Result<String, String> {
    Ok(format!(
        "{} threads, {}",
        available_threads(),
        cpu_features()
    ))
}

fn create(options: &BackendOptions) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(CpuBackend::new(options.threads)?))
}

inventory::submit! {
    BackendEntry {
        name: CPU_BACKEND_NAME,
        description: "CPU: ndarray storage, gemm-crate GEMM with run-time SIMD dispatch, rayon threads",
        probe,
        create,
    }
}
