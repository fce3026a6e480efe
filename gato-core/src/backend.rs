//! The `Backend` trait: the primitives a Gato forward pass needs, object-safe so model code is written once
//! against `&dyn Backend` and never names a concrete backend.
//!
//! Design rules (so backward ops can be added later without reshaping the trait):
//! - every op is a pure function from input tensors to a new output tensor — no hidden state — so a tape can
//!   record it and a gradient op can be added per forward op; the one exception, [`Backend::slice_assign`] (the KV
//!   cache's append), writes copy-on-write, so no other handle ever observes a change;
//! - op families take small parameter structs or enums ([`MatmulSpec`], [`UnaryOp`], [`AttentionSpec`], ...) that
//!   can grow new variants or fields;
//! - convenience and fused ops ([`Backend::linear`]) have default implementations in terms of the primitives, so a
//!   new backend only implements the primitives and optimises what it likes; future backward ops will be added the
//!   same way, as defaulted methods returning [`Error::Unsupported`] until a backend implements them;
//! - a backend may hold a tensor in a layout of its own ([`Backend::pack_weight`]: weights laid out for the
//!   few-row products of acting); such a tensor still has the same shape, dtype and values, and every op accepts it;
//! - shapes are checked once, in [`crate::ops`], by functions every backend calls, so all backends accept and
//!   reject exactly the same inputs with the same messages.
//!
//! Compute is f32. `F16`/`BF16` are storage types ([`Backend::cast`] converts) and may be a matrix product's `b`
//! operand (weights; accumulation stays f32); `U32` holds token ids.

use std::fmt;

use crate::dtype::{DType, HostData, HostSlice};
use crate::error::{Error, Result};
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Options of a matrix product `alpha · op(a) · op(b)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatmulSpec {
    /// Use `aᵀ` (the last two dims of `a` are `[K, M]`).
    pub trans_a: bool,
    /// Use `bᵀ` (the last two dims of `b` are `[N, K]`), e.g. tied output logits `h · Eᵀ`.
    pub trans_b: bool,
    /// Scale applied to the product.
    pub alpha: f32,
}

impl Default for MatmulSpec {
    fn default() -> Self {
        MatmulSpec {
            trans_a: false,
            trans_b: false,
            alpha: 1.0,
        }
    }
}

impl MatmulSpec {
    /// `a · bᵀ`.
    pub fn nt() -> Self {
        MatmulSpec {
            trans_b: true,
            ..Default::default()
        }
    }
}

/// Input precision of the products against a weight laid out by [`Backend::pack_weight`] (what JAX calls a
/// matmul's precision); accumulation is f32 either way. Acting chooses it (`gato act --matmul-precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatmulPrecision {
    /// The backend's ordinary products, as [`Backend::matmul`] describes them (the CPU: f32 activations times
    /// the weight's values widened exactly). The default.
    #[default]
    F32,
    /// For a bf16 weight, the activations may be rounded to bf16 (nearest even), making each product bf16 × bf16
    /// with f32 accumulation — what bf16 matrix units (TPUs, tensor cores) compute, JAX's `bfloat16` precision. A
    /// backend does so where its hardware multiplies bf16 faster (the CPU backend: with AVX512_BF16, at about
    /// twice the f32 FMA rate) and computes as [`MatmulPrecision::F32`] elsewhere; f32 and f16 weights are
    /// unaffected. The rounding adds a relative error of at most 2⁻⁹ per activation.
    Bf16,
}

impl MatmulPrecision {
    /// `f32` or `bf16`.
    pub fn as_str(self) -> &'static str {
        match self {
            MatmulPrecision::F32 => "f32",
            MatmulPrecision::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for MatmulPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for MatmulPrecision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(MatmulPrecision::F32),
            "bf16" => Ok(MatmulPrecision::Bf16),
            other => Err(Error::OutOfRange {
                op: "matmul precision",
                what: "precision".into(),
                value: other.into(),
                allowed: "f32 or bf16".into(),
            }),
        }
    }
}

/// Elementwise functions of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// Exact GELU, `x · Φ(x) = x/2 · (1 + erf(x/√2))` (SPEC §6).
    Gelu,
    /// `max(x, 0)`.
    Relu,
    /// `eˣ`.
    Exp,
    /// `tanh x`.
    Tanh,
    /// `−x`.
    Neg,
}

/// Elementwise functions of two tensors, with `b` broadcast over the leading dims of `a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a − b`.
    Sub,
    /// `a · b`.
    Mul,
    /// `a / b`.
    Div,
    /// `max(a, b)`.
    Maximum,
}

/// Options of scaled dot-product attention.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AttentionSpec {
    /// Softmax scale, `1/√kv` in Gato (SPEC §6).
    pub scale: f32,
    /// Apply the causal mask: query `i` sees keys `j ≤ q_offset + i`.
    pub causal: bool,
    /// Absolute position of the first query among the keys (0 for a full forward; the cache length when decoding
    /// new tokens against a KV cache).
    pub q_offset: usize,
    /// Per batch entry, how many leading keys are real (the rest is padding). `None`: all keys are real.
    /// A query row that sees no real key outputs zeros.
    pub kv_len: Option<Vec<usize>>,
}

/// Options of a 2-D convolution (NCHW, weights `[O, C, kh, kw]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dSpec {
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

impl Default for Conv2dSpec {
    fn default() -> Self {
        Conv2dSpec {
            stride: 1,
            padding: 0,
        }
    }
}

/// A compute backend. Implementations register themselves with [`crate::registry::BackendEntry`].
pub trait Backend: Send + Sync + fmt::Debug {
    /// The registered name, e.g. `cpu`.
    fn name(&self) -> &str;

    /// Human-readable device description (CPU model and threads, GPU name and memory, ...).
    fn device_description(&self) -> String;

    /// Whether tensors of this dtype can be stored (and uploaded/downloaded/cast).
    fn supports_dtype(&self, dtype: DType) -> bool;

    // ---- memory ----

    /// Copy host data to a new tensor of the given shape. Errors if the element count does not match.
    fn upload(&self, data: HostSlice<'_>, shape: &Shape) -> Result<Tensor>;

    /// Copy a tensor back to the host.
    fn download(&self, x: &Tensor) -> Result<HostData>;

    /// Copy an f32 tensor into `out`, replacing what it held: how acting reads each token's logits without
    /// allocating (SPEC §7) once `out` has the capacity. Errors, leaving `out` as it was, when `x` is not f32.
    /// The default downloads and copies.
    fn download_f32_into(&self, x: &Tensor, out: &mut Vec<f32>) -> Result<()> {
        x.expect_dtype("download_f32_into", "x", DType::F32)?;
        let data = self.download(x)?.into_f32().ok_or_else(|| Error::DType {
            op: "download_f32_into",
            detail: "the backend downloaded another dtype".into(),
        })?;
        out.clear();
        out.extend_from_slice(&data);
        Ok(())
    }

    /// A tensor of zeros.
    fn zeros(&self, shape: &Shape, dtype: DType) -> Result<Tensor>;

    /// Convert between float dtypes (round to nearest even when narrowing).
    fn cast(&self, x: &Tensor, dtype: DType) -> Result<Tensor>;

    /// Run `f`, a sequence of ops, inside the backend's execution context. The CPU backend runs it on one of its
    /// worker threads, so each op inside starts without handing work to another thread (which costs more than
    /// a small op itself, e.g. when decoding one token); other backends just call `f`. Model entry points wrap
    /// their whole pass in it (see [`run_scoped`]).
    fn scoped(&self, f: &mut (dyn FnMut() -> Result<()> + Send)) -> Result<()> {
        f()
    }

    /// Wait until all queued work has finished (a no-op for synchronous backends).
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    // ---- matmul ----

    /// `alpha · op(a) · op(b)` over the last two dims. `a` is `[..., M, K]` (`[..., K, M]` transposed); `b` is
    /// either `[K, N]` (shared by every batch entry, e.g. a weight) or has the same leading dims as `a`. `a` is f32;
    /// `b` is f32, f16 or bf16 (16-bit weights; the result is f32, accumulated in f32 — a backend may round `a` to
    /// `b`'s type for a tensor-core product).
    fn matmul(&self, a: &Tensor, b: &Tensor, spec: &MatmulSpec) -> Result<Tensor>;

    /// `x · w + bias` with `x: [..., in]`, `w: [in, out]`, `bias: [out]`. Backends may fuse it.
    fn linear(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let y = self.matmul(x, w, &MatmulSpec::default())?;
        match bias {
            Some(b) => self.binary(BinaryOp::Add, &y, b),
            None => Ok(y),
        }
    }

    /// The weight `w` (`[K, N]`, f32/f16/bf16) laid out for repeated [`Backend::linear`] /
    /// [`Backend::linear_act`] products with few rows, as acting runs them (SPEC §7), which run at `precision`.
    /// The result is a tensor like `w` (same shape, dtype and values; every op accepts it, and with
    /// [`MatmulPrecision::F32`] results are the same up to f32 rounding order); it may hold more memory (the CPU
    /// backend keeps both layouts). `Ok(None)`: this backend has no faster layout (the default). Pack after
    /// [`Backend::cast`]: a cast returns an ordinary tensor.
    fn pack_weight(&self, w: &Tensor, precision: MatmulPrecision) -> Result<Option<Tensor>> {
        let _ = (w, precision);
        Ok(None)
    }

    /// `act(x · w + bias)` — the first feed-forward layer with its activation (App. C.1). Backends may fuse the
    /// activation into the product's output pass; the default is [`Backend::linear`] then [`Backend::unary`].
    fn linear_act(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        act: UnaryOp,
    ) -> Result<Tensor> {
        let y = self.linear(x, w, bias)?;
        self.unary(act, &y)
    }

    // ---- elementwise ----

    /// `f(x)` elementwise.
    fn unary(&self, op: UnaryOp, x: &Tensor) -> Result<Tensor>;

    /// `a ∘ b` elementwise; `b`'s shape must equal `a`'s or a suffix of it (broadcast over leading dims).
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor>;

    /// `x · mul + add` elementwise with scalars.
    fn affine(&self, x: &Tensor, mul: f32, add: f32) -> Result<Tensor>;

    /// GEGLU: `x: [..., 2F]` → `gelu(x[..., :F]) · x[..., F:]` of shape `[..., F]` (App. C.1).
    fn geglu(&self, x: &Tensor) -> Result<Tensor>;

    // ---- norm ----

    /// LayerNorm over the last dim: `(x − mean)/√(var + eps) · gamma + beta`, biased variance.
    fn layer_norm(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Result<Tensor>;

    /// GroupNorm on NCHW input: channels split into `groups` groups, each normalised over (channels of the group,
    /// H, W), then per-channel `gamma`/`beta` (App. C.2).
    fn group_norm(
        &self,
        x: &Tensor,
        groups: usize,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f32,
    ) -> Result<Tensor>;

    // ---- softmax / attention ----

    /// Softmax over the last dim.
    fn softmax(&self, x: &Tensor) -> Result<Tensor>;

    /// Log-softmax over the last dim (for the cross-entropy loss).
    fn log_softmax(&self, x: &Tensor) -> Result<Tensor>;

    /// Scaled dot-product attention. `q: [B, H, Tq, D]`, `k: [B, H, Tk, D]`, `v: [B, H, Tk, Dv]` →
    /// `[B, H, Tq, Dv]`; masking per [`AttentionSpec`].
    fn attention(&self, q: &Tensor, k: &Tensor, v: &Tensor, spec: &AttentionSpec)
        -> Result<Tensor>;

    // ---- gather / conv ----

    /// Rows of `table: [V, D]` at `ids` (U32, any shape) → `[..ids, D]`. [`crate::ops::PAD_ID`] gathers a zero row;
    /// any other id ≥ V is an error naming it — returned by this call, or, by an asynchronous backend that checks
    /// ids on the device, by the next [`Backend::download`] or [`Backend::synchronize`] (no data is returned).
    fn embedding(&self, table: &Tensor, ids: &Tensor) -> Result<Tensor>;

    /// 2-D convolution, `x: [N, C, H, W]`, `w: [O, C, kh, kw]`, `bias: [O]` → `[N, O, H', W']`.
    fn conv2d(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        spec: &Conv2dSpec,
    ) -> Result<Tensor>;

    // ---- layout (KV cache, heads) ----

    /// Concatenate along `axis`; all other dims must match.
    fn concat(&self, xs: &[&Tensor], axis: usize) -> Result<Tensor>;

    /// `x[.., start..start+len, ..]` along `axis`.
    fn slice(&self, x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor>;

    /// Reorder dims: output dim `i` is input dim `perm[i]` (materialised contiguously).
    fn permute(&self, x: &Tensor, perm: &[usize]) -> Result<Tensor>;

    /// Write `src` into `dst[.., start..start+len, ..]` along `axis` — the one op that writes into an existing
    /// tensor, so a KV cache appends a token without copying what it holds (SPEC §6). Copy-on-write: when other
    /// handles share `dst`'s storage, `dst` first gets its own copy, so no other handle ever sees the change.
    /// The default builds the result from `slice` and `concat` (always a copy); backends write in place.
    fn slice_assign(
        &self,
        dst: &mut Tensor,
        src: &Tensor,
        axis: usize,
        start: usize,
    ) -> Result<()> {
        let (_, n, len, _) = crate::ops::slice_assign_dims(dst, src, axis, start)?;
        let head = self.slice(dst, axis, 0, start)?;
        let tail = self.slice(dst, axis, start + len, n - start - len)?;
        *dst = self.concat(&[&head, src, &tail], axis)?;
        Ok(())
    }
}

/// Run `f` through [`Backend::scoped`] and return its result.
pub fn run_scoped<T: Send>(be: &dyn Backend, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let mut f = Some(f);
    let mut out = None;
    be.scoped(&mut || {
        if let Some(f) = f.take() {
            out = Some(f());
        }
        Ok(())
    })?;
    out.unwrap_or_else(|| {
        Err(Error::Backend {
            backend: be.name().to_string(),
            op: "scoped",
            detail: "the backend returned without running the closure".into(),
        })
    })
}

/// Error for a float op given a tensor of another dtype; shared by backends.
pub fn require_dtype(op: &'static str, args: &[(&str, &Tensor)], dtype: DType) -> Result<()> {
    for (name, t) in args {
        t.expect_dtype(op, name, dtype)?;
    }
    Ok(())
}

/// Error for a float dtype the backend cannot store.
pub fn unsupported_dtype(op: &'static str, backend: &str, dtype: DType) -> Error {
    Error::DType {
        op,
        detail: format!("backend `{backend}` cannot store {dtype}"),
    }
}
