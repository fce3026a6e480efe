//! # gato-cpu
//!
//! The CPU backend of gato-rs (`cpu`, registered through `inventory` like `gato-cuda`'s `cuda`): ndarray storage,
//! the `gemm` crate for large matrix products, rayon for threads, and register-tiled SIMD kernels (AVX-512 and
//! AVX2, chosen at run time) for the few-row products and attention tiles of acting.
//!
//! One module per op family of [`gato_core::Backend`] — `memory`, `matmul`, `elementwise`, `norm`,
//! `attention`, `gather_conv`, `layout` — each holding the family's `impl` and its kernels; acting-only weight
//! layouts (strips for few-row products, bf16 row pairs for `vdpbf16ps`) live in [`acting`]. Each `impl` validates
//! arguments with [`gato_core::ops`], unwraps storage and runs the kernel inside the backend's own rayon pool, so
//! `--threads` bounds every op. Kernels write into an output buffer the backend hands them: `pool` recycles
//! buffers of dropped outputs (up to 4 MiB each), so a warm acting loop allocates nothing. [`peak`] measures the
//! machine's FMA peak and read bandwidth, the ceilings `gato bench` reports against.
//!
//! Link it by name where the registry must hold it: `use gato_cpu as _;`.

#![warn(missing_docs)]

pub mod acting;
mod attention;
mod elementwise;
mod gather_conv;
mod layout;
mod matmul;
mod memory;
mod norm;
mod optim;
pub mod peak;
mod pool;
mod scratch;
mod storage;
#[cfg(test)]
mod test_util;

use std::sync::Arc;

pub use acting::packed::CpuPackedWeight;
pub use peak::{measure_fma_peak, measure_read_bandwidth, Ceiling};
pub use storage::{CpuStorage, CPU_BACKEND_NAME};

use gato_core::backend::Backend;
use gato_core::dtype::DType;
use gato_core::error::{Error, Result};
use gato_core::registry::{BackendEntry, BackendOptions};
use gato_core::shape::Shape;
use gato_core::tensor::Tensor;

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

/// Whether products against bf16 weights laid out for [`gato_core::MatmulPrecision::Bf16`] run as bf16 × bf16 here
/// (`vdpbf16ps`: the CPU has AVX-512F and AVX512_BF16, and `GATO_NO_AVX512` is not set); elsewhere they stay f32.
pub fn bf16_products_available() -> bool {
    acting::bf16_pairs::available()
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

/// The most worker threads [`CpuBackend::new`] accepts: four per core this process may use. More only adds
/// start-up time and contention (100 000 threads took over a minute to start on 2 cores).
pub fn max_threads() -> usize {
    4 * available_threads()
}

fn available_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl CpuBackend {
    /// A backend with `threads` workers (`None`: all cores). Allowed: 1 to [`max_threads`] (four per core this
    /// process may use); anything else is an error naming the range, before any thread is started.
    pub fn new(threads: Option<usize>) -> Result<Self> {
        let threads = threads.unwrap_or_else(available_threads);
        let max = max_threads();
        if threads == 0 || threads > max {
            return Err(Error::OutOfRange {
                op: "CpuBackend::new",
                what: "threads".into(),
                value: threads.to_string(),
                allowed: format!(
                    "1 to {max} (4 × the {} cores this process may use)",
                    available_threads()
                ),
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
    ) -> Result<matmul::small_m::Weights<'a>> {
        let contiguous = || internal(op, "non-contiguous storage");
        Ok(match self.storage(op, t)? {
            CpuStorage::F32(a) => {
                matmul::small_m::Weights::F32(a.as_slice().ok_or_else(contiguous)?)
            }
            CpuStorage::F16(a) => {
                matmul::small_m::Weights::F16(a.as_slice().ok_or_else(contiguous)?)
            }
            CpuStorage::BF16(a) => {
                matmul::small_m::Weights::BF16(a.as_slice().ok_or_else(contiguous)?)
            }
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

/// No collectives: data parallelism across processes needs NCCL (`--backend cuda`); in-process groups
/// (`gato_train::LocalGroup`) work on any backend.
impl gato_core::CollectiveOps for CpuBackend {}

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
