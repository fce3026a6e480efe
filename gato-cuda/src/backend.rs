//! The CUDA backend: cuBLAS for matrix products, NVRTC-compiled kernels (`kernels.cu`) for everything else, one
//! stream per backend, device memory owned by tensor handles. Host↔device copies happen only in `upload` and
//! `download` (and a few bytes of shape metadata for `permute`); no op synchronises the stream.

use std::sync::{Arc, OnceLock};

use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, StridedBatchedConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use gato_core::{
    ops, AttentionSpec, Backend, BinaryOp, Conv2dSpec, DType, Error, HostData, HostSlice,
    MatmulSpec, Result, Shape, Tensor, UnaryOp,
};
use half::{bf16, f16};

use crate::storage::{CudaStorage, CUDA_BACKEND_NAME};

/// The CUDA C source of every kernel.
pub const KERNELS: &str = include_str!("kernels.cu");

/// A CUDA device with its stream, cuBLAS handle and compiled kernels.
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    module: OnceLock<std::result::Result<Arc<CudaModule>, String>>,
    description: String,
    /// Id range checks done on the device, read back at the next download or synchronize.
    pending_ids: std::sync::Mutex<Vec<PendingIdCheck>>,
}

/// An embedding call whose ids the kernel checked: its flag (`n − first bad position`, 0 = valid) and the ids.
struct PendingIdCheck {
    flag: CudaSlice<u64>,
    ids: Tensor,
    vocab: usize,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaBackend({})", self.description)
    }
}

fn err(op: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Backend {
        backend: CUDA_BACKEND_NAME.into(),
        op,
        detail: e.to_string(),
    }
}

/// Grid for a grid-stride loop over `n` elements.
fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 65_535 * 8) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block of `threads` per row.
fn per_row(rows: usize, threads: u32) -> LaunchConfig {
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

    fn function(&self, name: &str) -> Result<CudaFunction> {
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

    fn storage<'a>(&self, op: &'static str, t: &'a Tensor) -> Result<&'a CudaStorage> {
        t.storage_as::<CudaStorage>(op, CUDA_BACKEND_NAME)
    }

    fn f32s<'a>(&self, op: &'static str, name: &str, t: &'a Tensor) -> Result<&'a CudaSlice<f32>> {
        match self.storage(op, t)? {
            CudaStorage::F32(s) => Ok(s),
            other => Err(Error::DType {
                op,
                detail: format!("`{name}` has dtype {}, expected f32", other.dtype()),
            }),
        }
    }

    fn alloc(&self, op: &'static str, n: usize) -> Result<CudaSlice<f32>> {
        self.stream
            .alloc_zeros::<f32>(n.max(1))
            .map_err(|e| err(op, e))
    }

    fn wrap(&self, shape: Shape, s: CudaStorage) -> Tensor {
        let dtype = s.dtype();
        Tensor::from_storage(shape, dtype, Arc::new(s))
    }

    /// `C = alpha · op(A) · op(B)`, row-major, batched; expressed to column-major cuBLAS as `Cᵀ = op(B)ᵀ · op(A)ᵀ`.
    fn gemm(
        &self,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        c: &mut CudaSlice<f32>,
        d: &ops::MatmulDims,
        spec: &MatmulSpec,
    ) -> Result<()> {
        let (m, n, k) = (d.m as i32, d.n as i32, d.k as i32);
        let ((op_a, ld_a), (op_b, ld_b)) = blas_ops(d, spec);
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
    fn gemm_half(
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
        let ((op_a, ld_a), (op_b, ld_b)) = blas_ops(d, spec);
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
    fn block_copy(&self, src: &CudaStorage, dst: &mut CudaStorage, plan: Copy2d) -> Result<()> {
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
    fn check_pending_ids(&self) -> Result<()> {
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
                ops::check_ids(&host, p.vocab)?;
                return Err(err(OP, "the device flagged an id the host check accepts"));
            }
        }
        Ok(())
    }

    /// The first `n` elements of a device buffer (buffers are at least one element long).
    fn fetch<T: cudarc::driver::DeviceRepr>(&self, s: &CudaSlice<T>, n: usize) -> Result<Vec<T>> {
        let mut v = self.stream.clone_dtoh(s).map_err(|e| err("download", e))?;
        v.truncate(n);
        Ok(v)
    }

    fn empty_like(&self, dtype: DType, n: usize) -> Result<CudaStorage> {
        let e = |x| err("alloc", x);
        Ok(match dtype {
            DType::F32 => CudaStorage::F32(self.stream.alloc_zeros::<f32>(n.max(1)).map_err(e)?),
            DType::F16 => CudaStorage::F16(self.stream.alloc_zeros::<u16>(n.max(1)).map_err(e)?),
            DType::BF16 => CudaStorage::BF16(self.stream.alloc_zeros::<u16>(n.max(1)).map_err(e)?),
            DType::U32 => CudaStorage::U32(self.stream.alloc_zeros::<u32>(n.max(1)).map_err(e)?),
        })
    }
}

/// cuBLAS operation and leading dimension of `a` and `b` for a row-major product (see `CudaBackend::gemm`).
fn blas_ops(
    d: &ops::MatmulDims,
    spec: &MatmulSpec,
) -> ((cublasOperation_t, i32), (cublasOperation_t, i32)) {
    let (m, n, k) = (d.m as i32, d.n as i32, d.k as i32);
    let op = |t: bool| {
        if t {
            cublasOperation_t::CUBLAS_OP_T
        } else {
            cublasOperation_t::CUBLAS_OP_N
        }
    };
    (
        (op(spec.trans_a), if spec.trans_a { m } else { k }),
        (op(spec.trans_b), if spec.trans_b { k } else { n }),
    )
}

/// A strided 2-D copy (rows of `count` elements) used by slice, concat and same-dtype cast.
#[derive(Clone, Copy)]
struct Copy2d {
    rows: usize,
    src_row: usize,
    src_off: usize,
    dst_row: usize,
    dst_off: usize,
    count: usize,
}

fn unary_code(op: UnaryOp) -> i32 {
    match op {
        UnaryOp::Gelu => 0,
        UnaryOp::Relu => 1,
        UnaryOp::Exp => 2,
        UnaryOp::Tanh => 3,
        UnaryOp::Neg => 4,
    }
}

fn binary_code(op: BinaryOp) -> i32 {
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

    fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| err("synchronize", e))?;
        self.check_pending_ids()
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
        let e = |x| err(OP, x);
        let s = match data {
            _ if n == 0 => self.empty_like(data.dtype(), 0)?,
            HostSlice::F32(v) => CudaStorage::F32(self.stream.clone_htod(v).map_err(e)?),
            HostSlice::F16(v) => CudaStorage::F16(
                self.stream
                    .clone_htod(&v.iter().map(|x| x.to_bits()).collect::<Vec<u16>>())
                    .map_err(e)?,
            ),
            HostSlice::BF16(v) => CudaStorage::BF16(
                self.stream
                    .clone_htod(&v.iter().map(|x| x.to_bits()).collect::<Vec<u16>>())
                    .map_err(e)?,
            ),
            HostSlice::U32(v) => CudaStorage::U32(self.stream.clone_htod(v).map_err(e)?),
        };
        Ok(self.wrap(shape.clone(), s))
    }

    fn download(&self, x: &Tensor) -> Result<HostData> {
        const OP: &str = "download";
        // A download waits for the stream anyway; raise any id error the device recorded first.
        self.check_pending_ids()?;
        let n = x.elem_count();
        Ok(match self.storage(OP, x)? {
            CudaStorage::F32(s) => HostData::F32(self.fetch(s, n)?),
            CudaStorage::F16(s) => {
                HostData::F16(self.fetch(s, n)?.into_iter().map(f16::from_bits).collect())
            }
            CudaStorage::BF16(s) => {
                HostData::BF16(self.fetch(s, n)?.into_iter().map(bf16::from_bits).collect())
            }
            CudaStorage::U32(s) => HostData::U32(self.fetch(s, n)?),
        })
    }

    fn zeros(&self, shape: &Shape, dtype: DType) -> Result<Tensor> {
        let n = shape.checked_elem_count("zeros")?;
        Ok(self.wrap(shape.clone(), self.empty_like(dtype, n)?))
    }

    fn cast(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        const OP: &str = "cast";
        let src = self.storage(OP, x)?;
        if src.dtype() == dtype {
            let mut out = self.empty_like(dtype, x.elem_count())?;
            let n = x.elem_count();
            self.block_copy(
                src,
                &mut out,
                Copy2d {
                    rows: 1,
                    src_row: n,
                    src_off: 0,
                    dst_row: n,
                    dst_off: 0,
                    count: n,
                },
            )?;
            return Ok(self.wrap(x.shape().clone(), out));
        }
        if !(src.dtype().is_float() && dtype.is_float()) {
            return Err(Error::DType {
                op: OP,
                detail: format!(
                    "cannot cast {} to {dtype}: only float dtypes convert",
                    src.dtype()
                ),
            });
        }
        let n = x.elem_count();
        let nn = n as i64;
        // Widen to f32 first, then narrow.
        let wide: CudaSlice<f32> = match src {
            CudaStorage::F32(s) => s.clone(),
            CudaStorage::F16(s) | CudaStorage::BF16(s) => {
                let name = if src.dtype() == DType::F16 {
                    "f16_to_f32"
                } else {
                    "bf16_to_f32"
                };
                let mut y = self.alloc(OP, n)?;
                let f = self.function(name)?;
                // SAFETY: n elements in and out.
                unsafe {
                    self.stream
                        .launch_builder(&f)
                        .arg(s)
                        .arg(&mut y)
                        .arg(&nn)
                        .launch(grid(n))
                }
                .map_err(|e| err(OP, e))?;
                y
            }
            CudaStorage::U32(_) => unreachable!("rejected above"),
        };
        let out = match dtype {
            DType::F32 => CudaStorage::F32(wide),
            DType::F16 | DType::BF16 => {
                let mut y = self
                    .stream
                    .alloc_zeros::<u16>(n.max(1))
                    .map_err(|e| err(OP, e))?;
                let f = self.function(if dtype == DType::F16 {
                    "f32_to_f16"
                } else {
                    "f32_to_bf16"
                })?;
                // SAFETY: n elements in and out.
                unsafe {
                    self.stream
                        .launch_builder(&f)
                        .arg(&wide)
                        .arg(&mut y)
                        .arg(&nn)
                        .launch(grid(n))
                }
                .map_err(|e| err(OP, e))?;
                if dtype == DType::F16 {
                    CudaStorage::F16(y)
                } else {
                    CudaStorage::BF16(y)
                }
            }
            DType::U32 => unreachable!("rejected above"),
        };
        Ok(self.wrap(x.shape().clone(), out))
    }

    fn matmul(&self, a: &Tensor, b: &Tensor, spec: &MatmulSpec) -> Result<Tensor> {
        const OP: &str = "matmul";
        let d = ops::matmul_dims(a.shape(), b.shape(), spec)?;
        let av = self.f32s(OP, "a", a)?;
        let mut c = self.alloc(OP, d.batch * d.m * d.n)?;
        let work = d.batch * d.m * d.n > 0 && d.k > 0;
        match self.storage(OP, b)? {
            CudaStorage::F32(bv) => {
                if work {
                    self.gemm(av, bv, &mut c, &d, spec)?;
                }
            }
            // 16-bit weights: the activations are rounded to the same type for the tensor-core product.
            CudaStorage::F16(bv) | CudaStorage::BF16(bv) => {
                if work {
                    let a16 = self.cast(a, b.dtype())?;
                    let a16v = match self.storage(OP, &a16)? {
                        CudaStorage::F16(s) | CudaStorage::BF16(s) => s,
                        _ => return Err(err(OP, "cast did not produce 16-bit storage")),
                    };
                    self.gemm_half(a16v, bv, &mut c, &d, spec, b.dtype())?;
                }
            }
            CudaStorage::U32(_) => {
                return Err(Error::DType {
                    op: OP,
                    detail: "`b` has dtype u32, expected f32, f16 or bf16".into(),
                })
            }
        }
        Ok(self.wrap(d.out, CudaStorage::F32(c)))
    }

    fn unary(&self, op: UnaryOp, x: &Tensor) -> Result<Tensor> {
        let xv = self.f32s("unary", "x", x)?;
        let n = x.elem_count();
        let mut y = self.alloc("unary", n)?;
        if n > 0 {
            let f = self.function("unary_f32")?;
            let (nn, code) = (n as i64, unary_code(op));
            // SAFETY: n elements in and out.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(xv)
                    .arg(&mut y)
                    .arg(&nn)
                    .arg(&code)
                    .launch(grid(n))
            }
            .map_err(|e| err("unary", e))?;
        }
        Ok(self.wrap(x.shape().clone(), CudaStorage::F32(y)))
    }

    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        const OP: &str = "binary";
        let (_, inner) = ops::broadcast_dims(OP, a.shape(), b.shape())?;
        let (av, bv) = (self.f32s(OP, "a", a)?, self.f32s(OP, "b", b)?);
        let n = a.elem_count();
        let mut y = self.alloc(OP, n)?;
        if n > 0 && inner > 0 {
            let f = self.function("binary_f32")?;
            let (nn, ii, code) = (n as i64, inner as i64, binary_code(op));
            // SAFETY: a has n elements, b has `inner`, y has n.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(av)
                    .arg(bv)
                    .arg(&mut y)
                    .arg(&nn)
                    .arg(&ii)
                    .arg(&code)
                    .launch(grid(n))
            }
            .map_err(|e| err(OP, e))?;
        }
        Ok(self.wrap(a.shape().clone(), CudaStorage::F32(y)))
    }

    fn affine(&self, x: &Tensor, mul: f32, add: f32) -> Result<Tensor> {
        let xv = self.f32s("affine", "x", x)?;
        let n = x.elem_count();
        let mut y = self.alloc("affine", n)?;
        if n > 0 {
            let f = self.function("affine_f32")?;
            let nn = n as i64;
            // SAFETY: n elements in and out.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(xv)
                    .arg(&mut y)
                    .arg(&nn)
                    .arg(&mul)
                    .arg(&add)
                    .launch(grid(n))
            }
            .map_err(|e| err("affine", e))?;
        }
        Ok(self.wrap(x.shape().clone(), CudaStorage::F32(y)))
    }

    fn geglu(&self, x: &Tensor) -> Result<Tensor> {
        let (rows, f_, shape) = ops::geglu_dims(x.shape())?;
        let xv = self.f32s("geglu", "x", x)?;
        let mut y = self.alloc("geglu", rows * f_)?;
        if rows * f_ > 0 {
            let f = self.function("geglu_f32")?;
            let (r, ff) = (rows as i64, f_ as i64);
            // SAFETY: x holds rows·2F, y rows·F.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(xv)
                    .arg(&mut y)
                    .arg(&r)
                    .arg(&ff)
                    .launch(grid(rows * f_))
            }
            .map_err(|e| err("geglu", e))?;
        }
        Ok(self.wrap(shape, CudaStorage::F32(y)))
    }

    fn layer_norm(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Tensor> {
        const OP: &str = "layer_norm";
        let (rows, d) = ops::layer_norm_dims(x.shape(), gamma.shape(), beta.shape())?;
        let (xv, g, b) = (
            self.f32s(OP, "x", x)?,
            self.f32s(OP, "gamma", gamma)?,
            self.f32s(OP, "beta", beta)?,
        );
        let mut y = self.alloc(OP, rows * d)?;
        if rows * d > 0 {
            let f = self.function("layer_norm_f32")?;
            let (r, dd) = (rows as i64, d as i32);
            // SAFETY: one block per row of d values.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(xv)
                    .arg(g)
                    .arg(b)
                    .arg(&mut y)
                    .arg(&r)
                    .arg(&dd)
                    .arg(&eps)
                    .launch(per_row(rows, 256))
            }
            .map_err(|e| err(OP, e))?;
        }
        Ok(self.wrap(x.shape().clone(), CudaStorage::F32(y)))
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
        let n = x.elem_count();
        let mut y = self.alloc(OP, n)?;
        if n > 0 {
            let f = self.function("group_norm_f32")?;
            let (gg, cg, hw) = (groups as i32, (d.c / groups) as i32, d.hw as i64);
            // SAFETY: one block per (image, group) of cg·hw contiguous values.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(xv)
                    .arg(g)
                    .arg(b)
                    .arg(&mut y)
                    .arg(&gg)
                    .arg(&cg)
                    .arg(&hw)
                    .arg(&eps)
                    .launch(per_row(d.n * groups, 256))
            }
            .map_err(|e| err(OP, e))?;
        }
        Ok(self.wrap(x.shape().clone(), CudaStorage::F32(y)))
    }

    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        softmax_impl(self, x, false)
    }

    fn log_softmax(&self, x: &Tensor) -> Result<Tensor> {
        softmax_impl(self, x, true)
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
        if d.dv > 32 * 8 {
            return Err(Error::shape(
                OP,
                format!("value size {} exceeds the fused kernel's 256", d.dv),
            ));
        }
        let (qv, kv, vv) = (
            self.f32s(OP, "q", q)?,
            self.f32s(OP, "k", k)?,
            self.f32s(OP, "v", v)?,
        );
        let rows = d.b * d.h * d.tq;
        let mut o = self.alloc(OP, rows * d.dv)?;
        if rows * d.dv > 0 {
            let f = self.function("attention_f32")?;
            let lens: Vec<i32> = spec
                .kv_len
                .as_ref()
                .map(|l| l.iter().map(|&x| x as i32).collect())
                .unwrap_or_else(|| vec![d.tk as i32; d.b]);
            let lens = self.stream.clone_htod(&lens).map_err(|e| err(OP, e))?;
            let (h, tq, tk, dd, dv) = (
                d.h as i32,
                d.tq as i32,
                d.tk as i32,
                d.d as i32,
                d.dv as i32,
            );
            let (causal, off, r) = (i32::from(spec.causal), spec.q_offset as i32, rows as i64);
            let cfg = LaunchConfig {
                grid_dim: ((rows * 32).div_ceil(128) as u32, 1, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: one warp per query row; all indices bounded by the checked dims.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(qv)
                    .arg(kv)
                    .arg(vv)
                    .arg(&mut o)
                    .arg(&h)
                    .arg(&tq)
                    .arg(&tk)
                    .arg(&dd)
                    .arg(&dv)
                    .arg(&spec.scale)
                    .arg(&causal)
                    .arg(&off)
                    .arg(&lens)
                    .arg(&r)
                    .launch(cfg)
            }
            .map_err(|e| err(OP, e))?;
        }
        Ok(self.wrap(Shape::new([d.b, d.h, d.tq, d.dv]), CudaStorage::F32(o)))
    }

    fn embedding(&self, table: &Tensor, ids: &Tensor) -> Result<Tensor> {
        const OP: &str = "embedding";
        let (v, d, shape) = ops::embedding_dims(table.shape(), ids.shape())?;
        let t = self.f32s(OP, "table", table)?;
        let id_slice = match self.storage(OP, ids)? {
            CudaStorage::U32(s) => s,
            other => {
                return Err(Error::DType {
                    op: OP,
                    detail: format!("`ids` has dtype {}, expected u32", other.dtype()),
                })
            }
        };
        // Range check on the device (no host round trip per call): the kernel flags the first bad id and the
        // error is raised at the next download or synchronize.
        let n = ids.elem_count();
        let mut y = self.alloc(OP, n * d)?;
        if n * d > 0 {
            let mut flag = self.stream.alloc_zeros::<u64>(1).map_err(|e| err(OP, e))?;
            let f = self.function("embedding_f32")?;
            let (nn, dd, vv) = (n as i64, d as i32, v.min(u32::MAX as usize) as u32);
            // SAFETY: the kernel reads a table row only for ids below V; y holds n·d; flag holds one u64.
            unsafe {
                self.stream
                    .launch_builder(&f)
                    .arg(t)
                    .arg(id_slice)
                    .arg(&mut y)
                    .arg(&nn)
                    .arg(&dd)
                    .arg(&vv)
                    .arg(&mut flag)
                    .launch(grid(n * d))
            }
            .map_err(|e| err(OP, e))?;
            self.pending_ids
                .lock()
                .map_err(|_| err(OP, "pending id checks poisoned"))?
                .push(PendingIdCheck {
                    flag,
                    ids: ids.clone(),
                    vocab: v,
                });
        }
        Ok(self.wrap(shape, CudaStorage::F32(y)))
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
        let p = d.oh * d.ow;
        let ck = d.c * d.kh * d.kw;
        let mut out = self.alloc(OP, d.n * d.o * p)?;
        if d.n * d.o * p > 0 {
            let im2col = self.function("im2col_f32")?;
            let mut cols = self.alloc(OP, ck * p)?;
            let img = d.c * d.h * d.w;
            let dims = ops::MatmulDims {
                batch: 1,
                m: d.o,
                n: p,
                k: ck,
                b_batched: false,
                out: Shape::new([d.o, p]),
            };
            let args = [d.c, d.h, d.w, d.kh, d.kw, d.oh, d.ow, d.stride, d.pad].map(|v| v as i32);
            for i in 0..d.n {
                let xi = xv.slice(i * img..(i + 1) * img);
                let mut l = self.stream.launch_builder(&im2col);
                l.arg(&xi).arg(&mut cols);
                for a in &args {
                    l.arg(a);
                }
                // SAFETY: one image in, C·kh·kw × OH·OW columns out.
                unsafe { l.launch(grid(ck * p)) }.map_err(|e| err(OP, e))?;
                let mut yi = out.slice_mut(i * d.o * p..(i + 1) * d.o * p);
                let (m_, n_, k_) = (dims.m as i32, dims.n as i32, dims.k as i32);
                let cfg = cudarc::cublas::GemmConfig {
                    transa: cublasOperation_t::CUBLAS_OP_N,
                    transb: cublasOperation_t::CUBLAS_OP_N,
                    m: n_,
                    n: m_,
                    k: k_,
                    alpha: 1.0f32,
                    lda: n_,
                    ldb: k_,
                    beta: 0.0f32,
                    ldc: n_,
                };
                // SAFETY: cols [CK, P], w [O, CK], y [O, P] as sized above.
                unsafe { self.blas.gemm(cfg, &cols, wv, &mut yi) }.map_err(|e| err(OP, e))?;
            }
            if let Some(b) = bias {
                let bv = self.f32s(OP, "bias", b)?;
                let f = self.function("add_channel_bias_f32")?;
                let (total, o, pp) = ((d.n * d.o * p) as i64, d.o as i32, p as i64);
                // SAFETY: y holds N·O·P, bias O.
                unsafe {
                    self.stream
                        .launch_builder(&f)
                        .arg(&mut out)
                        .arg(bv)
                        .arg(&total)
                        .arg(&o)
                        .arg(&pp)
                        .launch(grid(d.n * d.o * p))
                }
                .map_err(|e| err(OP, e))?;
            }
        }
        Ok(self.wrap(Shape::new([d.n, d.o, d.oh, d.ow]), CudaStorage::F32(out)))
    }

    fn concat(&self, xs: &[&Tensor], axis: usize) -> Result<Tensor> {
        const OP: &str = "concat";
        let shapes: Vec<&Shape> = xs.iter().map(|t| t.shape()).collect();
        let (shape, outer, blocks) = ops::concat_dims(&shapes, axis)?;
        let dtype = xs[0].dtype();
        if let Some((i, t)) = xs.iter().enumerate().find(|(_, t)| t.dtype() != dtype) {
            return Err(Error::DType {
                op: OP,
                detail: format!("tensor {i} has dtype {}, tensor 0 has {dtype}", t.dtype()),
            });
        }
        let row: usize = blocks.iter().sum();
        let mut out = self.empty_like(dtype, outer * row)?;
        let mut off = 0;
        for (t, &blk) in xs.iter().zip(&blocks) {
            self.block_copy(
                self.storage(OP, t)?,
                &mut out,
                Copy2d {
                    rows: outer,
                    src_row: blk,
                    src_off: 0,
                    dst_row: row,
                    dst_off: off,
                    count: blk,
                },
            )?;
            off += blk;
        }
        Ok(self.wrap(shape, out))
    }

    fn slice(&self, x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        const OP: &str = "slice";
        let (shape, outer, n, inner) = ops::slice_dims(x.shape(), axis, start, len)?;
        let src = self.storage(OP, x)?;
        let mut out = self.empty_like(x.dtype(), outer * len * inner)?;
        self.block_copy(
            src,
            &mut out,
            Copy2d {
                rows: outer,
                src_row: n * inner,
                src_off: start * inner,
                dst_row: len * inner,
                dst_off: 0,
                count: len * inner,
            },
        )?;
        Ok(self.wrap(shape, out))
    }

    fn slice_assign(
        &self,
        dst: &mut Tensor,
        src: &Tensor,
        axis: usize,
        start: usize,
    ) -> Result<()> {
        const OP: &str = "slice_assign";
        let (outer, n, len, inner) = ops::slice_assign_dims(dst, src, axis, start)?;
        let src_storage = self.storage(OP, src)?;
        let total = dst.elem_count();
        let target = dst.storage_for_write::<CudaStorage>(OP, CUDA_BACKEND_NAME, |shared| {
            let mut own = self.empty_like(shared.dtype(), total)?;
            self.block_copy(
                shared,
                &mut own,
                Copy2d {
                    rows: 1,
                    src_row: total,
                    src_off: 0,
                    dst_row: total,
                    dst_off: 0,
                    count: total,
                },
            )?;
            Ok(own)
        })?;
        self.block_copy(
            src_storage,
            target,
            Copy2d {
                rows: outer,
                src_row: len * inner,
                src_off: 0,
                dst_row: n * inner,
                dst_off: start * inner,
                count: len * inner,
            },
        )
    }

    fn permute(&self, x: &Tensor, perm: &[usize]) -> Result<Tensor> {
        const OP: &str = "permute";
        let shape = ops::permute_dims(x.shape(), perm)?;
        let n = x.elem_count();
        let src = self.storage(OP, x)?;
        let mut out = self.empty_like(x.dtype(), n)?;
        if n > 0 {
            let in_dims = x.dims();
            let mut strides = vec![1i64; in_dims.len()];
            for i in (0..in_dims.len().saturating_sub(1)).rev() {
                strides[i] = strides[i + 1] * in_dims[i + 1] as i64;
            }
            let mut meta = vec![perm.len() as i64];
            meta.extend(shape.dims().iter().map(|&d| d as i64));
            meta.extend(perm.iter().map(|&p| strides[p]));
            let meta = self.stream.clone_htod(&meta).map_err(|e| err(OP, e))?;
            let nn = n as i64;
            macro_rules! go {
                ($name:literal, $s:expr, $d:expr) => {{
                    let f = self.function($name)?;
                    // SAFETY: every output index maps to an input index below n.
                    unsafe {
                        self.stream
                            .launch_builder(&f)
                            .arg($s)
                            .arg($d)
                            .arg(&nn)
                            .arg(&meta)
                            .launch(grid(n))
                    }
                    .map_err(|e| err(OP, e))?;
                }};
            }
            match (src, &mut out) {
                (CudaStorage::F32(s), CudaStorage::F32(d)) => go!("permute_f32", s, d),
                (CudaStorage::U32(s), CudaStorage::U32(d)) => go!("permute_b32", s, d),
                (CudaStorage::F16(s), CudaStorage::F16(d))
                | (CudaStorage::BF16(s), CudaStorage::BF16(d)) => go!("permute_b16", s, d),
                _ => return Err(err(OP, "mixed dtypes")),
            }
        }
        Ok(self.wrap(shape, out))
    }
}

fn softmax_impl(be: &CudaBackend, x: &Tensor, log: bool) -> Result<Tensor> {
    const OP: &str = "softmax";
    let d = x.shape().last_dim(OP)?;
    let xv = be.f32s(OP, "x", x)?;
    let n = x.elem_count();
    let rows = n.checked_div(d).unwrap_or(0);
    let mut y = be.alloc(OP, n)?;
    if n > 0 {
        let f = be.function("softmax_f32")?;
        let (r, dd, lg) = (rows as i64, d as i32, i32::from(log));
        // SAFETY: one block per row of d values.
        unsafe {
            be.stream
                .launch_builder(&f)
                .arg(xv)
                .arg(&mut y)
                .arg(&r)
                .arg(&dd)
                .arg(&lg)
                .launch(per_row(rows, 256))
        }
        .map_err(|e| err(OP, e))?;
    }
    Ok(be.wrap(x.shape().clone(), CudaStorage::F32(y)))
}
