//! The CUDA backend: cuBLAS for matrix products, NVRTC-compiled kernels (`kernels.cu`) for everything else, one
//! stream per backend, device memory owned by tensor handles. Host↔device copies happen only in `upload` and
//! `download` (and a few bytes of shape metadata for `permute`); no op synchronises the stream.

use std::sync::{Arc, OnceLock};

use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, StridedBatchedConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use gato_core::{ops, Backend, BinaryOp, DType, Error, MatmulSpec, Result, Shape, Tensor, UnaryOp};

use crate::storage::{CudaStorage, CUDA_BACKEND_NAME};

/// The CUDA C source of every kernel: the forward ops (`kernels.cu`), then training's backward ops, loss and
/// optimiser (`kernels_backward.cu`, which uses the helpers of the first), compiled as one NVRTC module.
pub const KERNELS: &str = concat!(
    include_str!("kernels.cu"),
    "\n",
    include_str!("kernels_backward.cu")
);

/// A CUDA device with its stream, cuBLAS handle and compiled kernels.
pub struct CudaBackend {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) blas: CudaBlas,
    pub(crate) module: OnceLock<std::result::Result<Arc<CudaModule>, String>>,
    pub(crate) description: String,
    /// Id range checks done on the device, read back at the next download or synchronize.
    pub(crate) pending_ids: std::sync::Mutex<Vec<PendingIdCheck>>,
}

/// A call whose ids the kernel checked: its flag (`n − first bad position`, 0 = valid), the ids and what they
/// index.
pub(crate) struct PendingIdCheck {
    pub(crate) flag: CudaSlice<u64>,
    pub(crate) ids: Tensor,
    pub(crate) vocab: usize,
    /// Embedding ids ([`ops::check_ids`]) or cross-entropy targets ([`ops::check_targets`]), for the error.
    pub(crate) targets: bool,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBackend({})", self.description)
    }
}

pub(crate) fn err(op: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Backend {
        backend: CUDA_BACKEND_NAME.into(),
        op,
        detail: e.to_string(),
    }
}

/// Grid for a grid-stride loop over `n` elements.
pub(crate) fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 65_535 * 8) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block of `threads` per row.
pub(crate) fn per_row(rows: usize, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows.max(1) as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl CudaBackend {
    /// Open device `ordinal`. Callers probe first ([`crate::probe`]): cudarc panics when a library is missing.
    pub fn new(ordinal: usize) -> Result<Self> {
        let ctx = CudaContext::new(ordinal).map_err(|e| err("create", e))?;
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).map_err(|e| err("create cuBLAS", e))?;
        let description = crate::probe::device_info(ordinal)
            .map(|d| d.to_string())
            .unwrap_or_else(|e| e);
        Ok(CudaBackend {
            ctx,
            stream,
            blas,
            module: OnceLock::new(),
            description,
            pending_ids: std::sync::Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn function(&self, name: &str) -> Result<CudaFunction> {
        let module = self
            .module
            .get_or_init(|| {
                let ptx = cudarc::nvrtc::compile_ptx(KERNELS).map_err(|e| format!("NVRTC: {e}"))?;
                self.ctx.load_module(ptx).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| err("compile kernels", e))?;
        module
            .load_function(name)
            .map_err(|e| err("load kernel", format!("{name}: {e}")))
    }

    pub(crate) fn storage<'a>(&self, op: &'static str, t: &'a Tensor) -> Result<&'a CudaStorage> {
        t.storage_as::<CudaStorage>(op, CUDA_BACKEND_NAME)
    }

    pub(crate) fn f32s<'a>(
        &self,
        op: &'static str,
        name: &str,
        t: &'a Tensor,
    ) -> Result<&'a CudaSlice<f32>> {
        match self.storage(op, t)? {
            CudaStorage::F32(s) => Ok(s),
            other => Err(Error::DType {
                op,
                detail: format!("`{name}` has dtype {}, expected f32", other.dtype()),
            }),
        }
    }

    pub(crate) fn alloc(&self, op: &'static str, n: usize) -> Result<CudaSlice<f32>> {
        self.stream
            .alloc_zeros::<f32>(n.max(1))
            .map_err(|e| err(op, e))
    }

    pub(crate) fn wrap(&self, shape: Shape, s: CudaStorage) -> Tensor {
        let dtype = s.dtype();
        Tensor::from_storage(shape, dtype, Arc::new(s))
    }

    /// `C = alpha · op(A) · op(B)`, row-major, batched; expressed to column-major cuBLAS as `Cᵀ = op(B)ᵀ · op(A)ᵀ`.
    pub(crate) fn gemm(
        &self,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        c: &mut CudaSlice<f32>,
        d: &ops::MatmulDims,
        spec: &MatmulSpec,
    ) -> Result<()> {
        let (m, n, k) = (d.m as i32, d.n as i32, d.k as i32);
        let ((op_a, ld_a), (op_b, ld_b)) = blas_ops((d.m, d.n, d.k), spec.trans_a, spec.trans_b);
        let cfg = StridedBatchedConfig {
            gemm: cudarc::cublas::GemmConfig {
                transa: op_b,
                transb: op_a,
                m: n,
                n: m,
                k,
                alpha: spec.alpha,
                lda: ld_b,
                ldb: ld_a,
                beta: 0.0f32,
                ldc: n,
            },
            batch_size: d.batch as i32,
            stride_a: if d.b_batched { (d.k * d.n) as i64 } else { 0 },
            stride_b: (d.m * d.k) as i64,
            stride_c: (d.m * d.n) as i64,
        };
        // SAFETY: buffer sizes match `d` (checked by `ops::matmul_dims` and the allocations), strides stay inside.
        unsafe { self.blas.gemm_strided_batched(cfg, b, a, c) }.map_err(|e| err("matmul", e))
    }

    /// The same product with 16-bit `a` and `b` (both f16 or both bf16, raw bits) and an f32 result, accumulated
    /// in f32 on the tensor cores (`cublasGemmStridedBatchedEx`, compute type 32F).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm_half(
        &self,
        a: &CudaSlice<u16>,
        b: &CudaSlice<u16>,
        c: &mut CudaSlice<f32>,
        d: &ops::MatmulDims,
        spec: &MatmulSpec,
        dtype: DType,
    ) -> Result<()> {
        use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cudaDataType};
        use cudarc::driver::{DevicePtr, DevicePtrMut};
        let (m, n, k) = (d.m as i32, d.n as i32, d.k as i32);
        let ((op_a, ld_a), (op_b, ld_b)) = blas_ops((d.m, d.n, d.k), spec.trans_a, spec.trans_b);
        let in_type = match dtype {
            DType::BF16 => cudaDataType::CUDA_R_16BF,
            _ => cudaDataType::CUDA_R_16F,
        };
        let (alpha, beta) = (spec.alpha, 0.0f32);
        let (bp, _gb) = b.device_ptr(&self.stream);
        let (ap, _ga) = a.device_ptr(&self.stream);
        let (cp, _gc) = c.device_ptr_mut(&self.stream);
        // SAFETY: as in `gemm`: buffer sizes match `d`, strides stay inside; alpha/beta are host f32 scalars (the
        // handle's default pointer mode) that outlive the call; the guards keep the pointers' stream order.
        unsafe {
            cudarc::cublas::result::gemm_strided_batched_ex(
                *self.blas.handle(),
                op_b,
                op_a,
                n,
                m,
                k,
                (&alpha as *const f32).cast(),
                bp as *const std::ffi::c_void,
                in_type,
                ld_b,
                if d.b_batched { (d.k * d.n) as i64 } else { 0 },
                ap as *const std::ffi::c_void,
                in_type,
                ld_a,
                (d.m * d.k) as i64,
                (&beta as *const f32).cast(),
                cp as *mut std::ffi::c_void,
                cudaDataType::CUDA_R_32F,
                n,
                (d.m * d.n) as i64,
                d.batch as i32,
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT_TENSOR_OP,
            )
        }
        .map_err(|e| err("matmul", e))
    }

    /// `dst[r·dst_row + dst_off + j] = src[r·src_row + src_off + j]` for `r < rows`, `j < count`.
    pub(crate) fn block_copy(
        &self,
        src: &CudaStorage,
        dst: &mut CudaStorage,
        plan: Copy2d,
    ) -> Result<()> {
        let Copy2d {
            rows,
            src_row,
            src_off,
            dst_row,
            dst_off,
            count,
        } = plan;
        let total = rows * count;
        if total == 0 {
            return Ok(());
        }
        let args = [
            rows as i64,
            src_row as i64,
            src_off as i64,
            dst_row as i64,
            dst_off as i64,
            count as i64,
        ];
        macro_rules! go {
            ($name:literal, $s:expr, $d:expr) => {{
                let f = self.function($name)?;
                let mut l = self.stream.launch_builder(&f);
                l.arg($s).arg($d);
                for a in &args {
                    l.arg(a);
                }
                // SAFETY: indices stay below rows·row lengths, which the callers size from checked shapes.
                unsafe { l.launch(grid(total)) }.map(|_| ()).map_err(|e| err("copy", e))
            }};
        }
        match (src, dst) {
            (CudaStorage::F32(s), CudaStorage::F32(d)) => go!("block_copy_f32", s, d),
            (CudaStorage::U32(s), CudaStorage::U32(d)) => go!("block_copy_b32", s, d),
            (CudaStorage::F16(s), CudaStorage::F16(d))
            | (CudaStorage::BF16(s), CudaStorage::BF16(d)) => go!("block_copy_b16", s, d),
            _ => Err(err("copy", "mixed dtypes")),
        }
    }

    /// Read back the flags of earlier embedding calls; the first bad id becomes the same error every backend
    /// gives ([`ops::check_ids`] on the host copy of those ids, fetched only in the error case).
    pub(crate) fn check_pending_ids(&self) -> Result<()> {
        const OP: &str = "embedding";
        let pending = std::mem::take(
            &mut *self
                .pending_ids
                .lock()
                .map_err(|_| err(OP, "pending id checks poisoned"))?,
        );
        for p in pending {
            let flag = self.stream.clone_dtoh(&p.flag).map_err(|e| err(OP, e))?;
            if flag.first().copied().unwrap_or(0) != 0 {
                let s = match self.storage(OP, &p.ids)? {
                    CudaStorage::U32(s) => s,
                    _ => return Err(err(OP, "ids are not u32")),
                };
                let host = self.fetch(s, p.ids.elem_count())?;
                if p.targets {
                    ops::check_targets(&host, p.vocab)?;
                } else {
                    ops::check_ids(&host, p.vocab)?;
                }
                return Err(err(OP, "the device flagged an id the host check accepts"));
            }
        }
        Ok(())
    }

    /// `t`'s storage for an in-place write, first made this handle's own when shared (copy-on-write, the copy
    /// queued on this backend's stream).
    pub(crate) fn own<'a>(
        &self,
        op: &'static str,
        t: &'a mut Tensor,
    ) -> Result<&'a mut CudaStorage> {
        t.storage_for_write::<CudaStorage>(op, CUDA_BACKEND_NAME, |shared| {
            shared.copy_on(&self.stream).map_err(|e| err(op, e))
        })
    }

    /// Queue the id check a kernel wrote into `flag` for the next download or synchronize.
    pub(crate) fn defer_id_check(
        &self,
        op: &'static str,
        flag: CudaSlice<u64>,
        ids: &Tensor,
        vocab: usize,
        targets: bool,
    ) -> Result<()> {
        self.pending_ids
            .lock()
            .map_err(|_| err(op, "pending id checks poisoned"))?
            .push(PendingIdCheck {
                flag,
                ids: ids.clone(),
                vocab,
                targets,
            });
        Ok(())
    }

    /// The u32 buffer of an id tensor.
    pub(crate) fn u32s<'a>(
        &self,
        op: &'static str,
        name: &str,
        t: &'a Tensor,
    ) -> Result<&'a CudaSlice<u32>> {
        match self.storage(op, t)? {
            CudaStorage::U32(s) => Ok(s),
            other => Err(Error::DType {
                op,
                detail: format!("`{name}` has dtype {}, expected u32", other.dtype()),
            }),
        }
    }

    /// Column sums of `x: [rows, d]` (f64 accumulation, fixed order): the gradient of a bias broadcast over rows.
    pub(crate) fn column_sums(
        &self,
        op: &'static str,
        x: &CudaSlice<f32>,
        rows: usize,
        d: usize,
    ) -> Result<CudaSlice<f32>> {
        let mut out = self.alloc(op, d)?;
        if rows * d > 0 {
            let f = self.function("sum_rows_f32")?;
            let (r, dd) = (rows as i64, d as i32);
            let cfg = LaunchConfig {
                grid_dim: (d.div_ceil(32) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: x holds rows·d values, out d; a block of 256 owns 32 columns.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(x)
                    .arg(&mut out)
                    .arg(&r)
                    .arg(&dd)
                    .launch(cfg)
            }
            .map_err(|e| err(op, e))?;
        }
        Ok(out)
    }

    /// Per-channel sums of `x: [n, c, p]` into `[c]` (f64 accumulation): a convolution's bias gradient and
    /// GroupNorm's `dγ`/`dβ`.
    pub(crate) fn channel_sums(
        &self,
        op: &'static str,
        x: &CudaSlice<f32>,
        (n, c, p): (usize, usize, usize),
    ) -> Result<CudaSlice<f32>> {
        let mut out = self.alloc(op, c)?;
        if n * c * p > 0 {
            let f = self.function("channel_sum_f32")?;
            let (nn, cc, pp) = (n as i64, c as i32, p as i64);
            // SAFETY: x holds n·c·p values, out c; one block per channel.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(x)
                    .arg(&mut out)
                    .arg(&nn)
                    .arg(&cc)
                    .arg(&pp)
                    .launch(per_row(c, 256))
            }
            .map_err(|e| err(op, e))?;
        }
        Ok(out)
    }

    /// One row-major product `C = op(A) · op(B) + beta · C` on buffer views: `op(A)` is `[m, k]`, `op(B)` `[k, n]`,
    /// `C` `[m, n]` (the backward's products, which slice images and accumulate).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm_rm<A, B, C>(
        &self,
        op: &'static str,
        (a, trans_a): (&A, bool),
        (b, trans_b): (&B, bool),
        c: &mut C,
        (m, n, k): (usize, usize, usize),
        beta: f32,
    ) -> Result<()>
    where
        A: cudarc::driver::DevicePtr<f32>,
        B: cudarc::driver::DevicePtr<f32>,
        C: cudarc::driver::DevicePtrMut<f32>,
    {
        // An empty product leaves C as it is: callers pass zeroed outputs, and beta is 0 or 1.
        if m * n * k == 0 {
            return Ok(());
        }
        let ((op_a, ld_a), (op_b, ld_b)) = blas_ops((m, n, k), trans_a, trans_b);
        // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ.
        let cfg = cudarc::cublas::GemmConfig {
            transa: op_b,
            transb: op_a,
            m: n as i32,
            n: m as i32,
            k: k as i32,
            alpha: 1.0f32,
            lda: ld_b,
            ldb: ld_a,
            beta,
            ldc: n as i32,
        };
        // SAFETY: the callers size A, B and C from checked shapes as [m,k]/[k,m], [k,n]/[n,k] and [m,n].
        unsafe { self.blas.gemm(cfg, b, a, c) }.map_err(|e| err(op, e))
    }

    /// The first `n` elements of a device buffer (buffers are at least one element long).
    pub(crate) fn fetch<T: cudarc::driver::DeviceRepr>(
        &self,
        s: &CudaSlice<T>,
        n: usize,
    ) -> Result<Vec<T>> {
        let mut v = self.stream.clone_dtoh(s).map_err(|e| err("download", e))?;
        v.truncate(n);
        Ok(v)
    }

    pub(crate) fn empty_like(&self, dtype: DType, n: usize) -> Result<CudaStorage> {
        let e = |x| err("alloc", x);
        Ok(match dtype {
            DType::F32 => CudaStorage::F32(self.stream.alloc_zeros::<f32>(n.max(1)).map_err(e)?),
            DType::F16 => CudaStorage::F16(self.stream.alloc_zeros::<u16>(n.max(1)).map_err(e)?),
            DType::BF16 => CudaStorage::BF16(self.stream.alloc_zeros::<u16>(n.max(1)).map_err(e)?),
            DType::U32 => CudaStorage::U32(self.stream.alloc_zeros::<u32>(n.max(1)).map_err(e)?),
        })
    }
}

/// cuBLAS operation and leading dimension of `a` and `b` for a row-major product `op(a)·op(b)` of `[m, k]` by
/// `[k, n]` (see `CudaBackend::gemm`).
pub(crate) fn blas_ops(
    (m, n, k): (usize, usize, usize),
    trans_a: bool,
    trans_b: bool,
) -> ((cublasOperation_t, i32), (cublasOperation_t, i32)) {
    let (m, n, k) = (m as i32, n as i32, k as i32);
    let op = |t: bool| {
        if t {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        }
    };
    (
        (op(trans_a), if trans_a { m } else { k }),
        (op(trans_b), if trans_b { k } else { n }),
    )
}

/// A strided 2-D copy (rows of `count` elements) used by slice, concat and same-dtype cast.
#[derive(Clone, Copy)]
pub(crate) struct Copy2d {
    pub(crate) rows: usize,
    pub(crate) src_row: usize,
    pub(crate) src_off: usize,
    pub(crate) dst_row: usize,
    pub(crate) dst_off: usize,
    pub(crate) count: usize,
}

pub(crate) fn unary_code(op: UnaryOp) -> i32 {
    match op {
        UnaryOp::Gelu => 0,
        UnaryOp::Relu => 1,
        UnaryOp::Exp => 2,
        UnaryOp::Tanh => 3,
        UnaryOp::Neg => 4,
    }
}

pub(crate) fn binary_code(op: BinaryOp) -> i32 {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
        BinaryOp::Maximum => 4,
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &str {
        CUDA_BACKEND_NAME
    }
    fn device_description(&self) -> String {
        self.description.clone()
    }
    fn supports_dtype(&self, _dtype: DType) -> bool {
        true
    }
}
