//! The `Backend` trait: the primitives a Gato forward pass needs, object-safe so model code is written once
//! against `&dyn Backend` and never names a concrete backend (`docs/design.md` §10).
//!
//! `Backend` is the union of one supertrait per op family, each in its own file, so that a family's backward ops
//! land beside its forwards:
//!
//! | family | file | ops |
//! |---|---|---|
//! | [`MemoryOps`] | `memory.rs` | upload, download, zeros, cast, scoped execution, synchronisation |
//! | [`MatmulOps`] | `matmul.rs` | matrix products, linear maps, acting's weight layouts |
//! | [`ElementwiseOps`] | `elementwise.rs` | unary and binary maps, affine, GEGLU |
//! | [`NormOps`] | `norm.rs` | LayerNorm, GroupNorm |
//! | [`AttentionOps`] | `attention.rs` | softmax, log-softmax, scaled dot-product attention |
//! | [`GatherConvOps`] | `gather_conv.rs` | embedding gather, 2-D convolution |
//! | [`LayoutOps`] | `layout.rs` | concat, slice, permute, the KV cache's in-place write |
//! | [`OptimOps`] | `optim.rs` | sum of squares, AdamW's in-place update (training) |
//! | [`CollectiveOps`] | `collective.rs` | a data-parallel group's id and [`Communicator`] (NCCL on GPUs) |
//!
//! Methods of every family are callable on a `&dyn Backend` without importing the family trait; a backend
//! implements each family in its own `impl` block.
//!
//! # The rules every backend follows
//! - **Purity.** Every op is a pure function from input tensors to a new output tensor, with no hidden state, so a
//!   gradient op can be written per forward op. The exceptions are [`LayoutOps::slice_assign`] (the KV cache's
//!   append) and [`OptimOps::adamw_step`] (the optimiser's update), which write copy-on-write: no other handle
//!   ever observes the change.
//! - **Validation.** Shapes are checked once, by the functions of [`crate::ops`] that every backend calls, so all
//!   backends accept and reject exactly the same inputs with the same messages.
//! - **Synchronisation.** An op may return before the device has finished (CUDA queues it on a stream). Only
//!   [`MemoryOps::download`], [`MemoryOps::download_f32_into`] and [`MemoryOps::synchronize`] wait; errors found on
//!   the device (an out-of-range id) surface there at the latest.
//! - **Defaults.** Convenience and fused ops (`linear`, `linear_act`, `slice_assign`, `download_f32_into`) have
//!   default implementations in terms of the primitives, so a new backend implements the primitives and optimises
//!   what it likes.
//! - **Layouts.** A backend may hold a tensor in a layout of its own ([`MatmulOps::pack_weight`]: acting's weights
//!   laid out for few-row products); such a tensor has the same shape, dtype and values, and every op accepts it.
//! - **Dtypes.** Compute is f32. `F16`/`BF16` are storage types ([`MemoryOps::cast`] converts) and may be a matrix
//!   product's `b` operand (weights; accumulation stays f32); `U32` holds token ids.
//!
//! # Why the acting knobs are in the core contract
//! Four methods exist for acting's speed rather than for the model's math. Each has a correct default, so a backend
//! that ignores them is still complete, and each is needed on the path every acting backend runs:
//! [`MemoryOps::scoped`] (one execution context per control step instead of a thread hand-off per op),
//! [`MemoryOps::download_f32_into`] (each decoded token's logits without an allocation),
//! [`MatmulOps::linear_act`] (the activation fused into the product's output pass) and [`MatmulOps::pack_weight`]
//! with [`MatmulPrecision`] (weights laid out once for few-row products). [`LayoutOps::slice_assign`] is the KV
//! cache's append, which would otherwise copy the whole cache per token.

use std::fmt;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

mod attention;
mod collective;
mod elementwise;
mod gather_conv;
mod layout;
mod matmul;
mod memory;
mod norm;
mod optim;

pub use attention::{AttentionOps, AttentionSpec};
pub use collective::{CollectiveOps, Communicator};
pub use elementwise::{BinaryOp, ElementwiseOps, UnaryOp};
pub use gather_conv::{Conv2dSpec, GatherConvOps};
pub use layout::LayoutOps;
pub use matmul::{MatmulOps, MatmulPrecision, MatmulSpec};
pub use memory::{run_scoped, MemoryOps};
pub use norm::NormOps;
pub use optim::{clip_scale, AdamWConstants, AdamWStep, AdamWTensor, ClippedStep, OptimOps};

/// A compute backend: every op family, plus what names and describes it. Implementations register themselves
/// with [`crate::registry::BackendEntry`].
pub trait Backend:
    MemoryOps
    + MatmulOps
    + ElementwiseOps
    + NormOps
    + AttentionOps
    + GatherConvOps
    + LayoutOps
    + OptimOps
    + CollectiveOps
    + Send
    + Sync
    + fmt::Debug
{
    /// The registered name, e.g. `cpu`.
    fn name(&self) -> &str;

    /// Human-readable device description (CPU model and threads, GPU name and memory, ...).
    fn device_description(&self) -> String;

    /// Whether tensors of this dtype can be stored (and uploaded/downloaded/cast).
    fn supports_dtype(&self, dtype: DType) -> bool;
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
