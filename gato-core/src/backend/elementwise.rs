//! Elementwise maps: activations (GELU, App. C.1), residual adds, scaling, GEGLU.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Elementwise functions of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    /// Exact GELU, `x · Φ(x) = x/2 · (1 + erf(x/√2))` (design.md §6).
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

/// Elementwise ops (a family of [`super::Backend`]).
pub trait ElementwiseOps {
    /// `f(x)` elementwise.
    fn unary(&self, op: UnaryOp, x: &Tensor) -> Result<Tensor>;

    /// `a ∘ b` elementwise; `b`'s shape must equal `a`'s or a suffix of it (broadcast over leading dims).
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor>;

    /// `x · mul + add` elementwise with scalars.
    fn affine(&self, x: &Tensor, mul: f32, add: f32) -> Result<Tensor>;

    /// GEGLU: `x: [..., 2F]` → `gelu(x[..., :F]) · x[..., F:]` of shape `[..., F]` (App. C.1).
    fn geglu(&self, x: &Tensor) -> Result<Tensor>;

    // ---- backward (training, design.md §8); defaults: not implemented by this backend ----

    /// The backward of [`ElementwiseOps::unary`]: `dx = dy · f'(x)`, `dy` shaped like `x`.
    fn unary_backward(&self, op: UnaryOp, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let _ = (op, x, dy);
        Err(Error::Unsupported {
            backend: std::any::type_name::<Self>().to_string(),
            op: "unary_backward",
        })
    }

    /// The backward of [`ElementwiseOps::geglu`]: `dy: [..., F]` → `dx: [..., 2F]`.
    fn geglu_backward(&self, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
        let _ = (x, dy);
        Err(Error::Unsupported {
            backend: std::any::type_name::<Self>().to_string(),
            op: "geglu_backward",
        })
    }

    /// Sum over every leading dim, `[..., D] → [D]`: the gradient of a bias broadcast over rows (a reduction, kept
    /// here beside the broadcast add whose backward it is).
    fn sum_rows(&self, x: &Tensor) -> Result<Tensor> {
        let _ = x;
        Err(Error::Unsupported {
            backend: std::any::type_name::<Self>().to_string(),
            op: "sum_rows",
        })
    }
}
