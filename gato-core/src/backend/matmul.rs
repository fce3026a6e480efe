//! Matrix products and linear maps (App. C.1's projections and feed-forward layers, the tied output head).

use std::fmt;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

use super::{BinaryOp, ElementwiseOps, UnaryOp};

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

/// Input precision of the products against a weight laid out by [`MatmulOps::pack_weight`] (what JAX calls a
/// matmul's precision); accumulation is f32 either way. Acting chooses it (`gato act --matmul-precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatmulPrecision {
    /// The backend's ordinary products, as [`MatmulOps::matmul`] describes them (the CPU: f32 activations times
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

/// Matrix products (a family of [`super::Backend`]). `linear` and `linear_act` default to products followed by
/// elementwise ops, hence the [`ElementwiseOps`] supertrait.
pub trait MatmulOps: ElementwiseOps {
    /// `alpha · op(a) · op(b)` over the last two dims. `a` is `[..., M, K]` (`[..., K, M]` transposed); `b` is
    /// either `[K, N]` (shared by every batch entry, e.g. a weight) or has the same leading dims as `a`. `a` is f32;
    /// `b` is f32, f16 or bf16 (16-bit weights; the result is f32, accumulated in f32 — a backend may round `a` to
    /// `b`'s type for a tensor-core product).
    fn matmul(&self, a: &Tensor, b: &Tensor, spec: &MatmulSpec) -> Result<Tensor>;

    /// Whether this backend multiplies bf16 operands faster than f32 ones (tensor cores, bf16 matrix units), so
    /// that mixed-precision training (`gato train --precision bf16`, design.md §8) pays off. A backend that says
    /// no still computes products against bf16 weights correctly; the trainer then keeps f32. Default: no.
    fn fast_bf16_products(&self) -> bool {
        false
    }

    /// `x · w + bias` with `x: [..., in]`, `w: [in, out]`, `bias: [out]`. Backends may fuse it.
    fn linear(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let y = self.matmul(x, w, &MatmulSpec::default())?;
        match bias {
            Some(b) => self.binary(BinaryOp::Add, &y, b),
            None => Ok(y),
        }
    }

    /// The weight `w` (`[K, N]`, f32/f16/bf16) laid out for repeated [`MatmulOps::linear`] /
    /// [`MatmulOps::linear_act`] products with few rows, as acting runs them (`docs/design.md` §7), which run at
    /// `precision`. The result is an acting view of `w` (same shape, dtype and values; every op accepts it, and
    /// with [`MatmulPrecision::F32`] results are the same up to f32 rounding order); it may hold more memory (the
    /// CPU backend keeps both layouts). `Ok(None)`: this backend has no faster layout (the default). Pack after
    /// [`super::MemoryOps::cast`]: a cast returns an ordinary tensor.
    fn pack_weight(&self, w: &Tensor, precision: MatmulPrecision) -> Result<Option<Tensor>> {
        let _ = (w, precision);
        Ok(None)
    }

    /// `act(x · w + bias)` — the first feed-forward layer with its activation (App. C.1). Backends may fuse the
    /// activation into the product's output pass; the default is [`MatmulOps::linear`] then
    /// [`ElementwiseOps::unary`].
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
}
