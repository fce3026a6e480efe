//! Tensor handles: a shape, a dtype and backend-owned storage.
//!
//! A `Tensor` is cheap to clone (the storage is reference counted) and immutable: every backend op returns a new
//! tensor. That keeps the op set a set of pure functions, which is what an autograd tape needs when backward ops
//! are added. Tensors are always contiguous row-major; [`Tensor::reshape`] is free.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::Shape;

/// Device memory owned by a backend. Backends downcast it back to their concrete type with [`Storage::as_any`].
pub trait Storage: Any + Send + Sync + fmt::Debug {
    /// Registered name of the backend that owns this storage.
    fn backend_name(&self) -> &str;
    /// For downcasting to the backend's concrete storage type.
    fn as_any(&self) -> &dyn Any;
    /// Mutable downcasting, for the one in-place op ([`crate::LayoutOps::slice_assign`]).
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Bytes held.
    fn size_in_bytes(&self) -> usize;
}

/// A handle to an n-dimensional array living on some backend.
#[derive(Clone)]
pub struct Tensor {
    shape: Shape,
    dtype: DType,
    storage: Arc<dyn Storage>,
}

impl Tensor {
    /// Wrap backend storage. Backends call this; the caller guarantees the storage holds `shape.elem_count()`
    /// elements of `dtype` in row-major order.
    pub fn from_storage(shape: Shape, dtype: DType, storage: Arc<dyn Storage>) -> Self {
        Tensor {
            shape,
            dtype,
            storage,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.rank()
    }

    /// Number of elements.
    pub fn elem_count(&self) -> usize {
        self.shape.elem_count()
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Name of the owning backend.
    pub fn backend_name(&self) -> &str {
        self.storage.backend_name()
    }

    /// The storage, for backends.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The storage for writing in place. When other handles share it (a clone, a reshape), `copy` first makes
    /// this handle its own storage (copy-on-write), so no other handle ever observes the write. Errors with
    /// [`Error::BackendMismatch`] when the storage is not `S`.
    pub fn storage_for_write<S: Storage>(
        &mut self,
        op: &'static str,
        expected_backend: &str,
        copy: impl FnOnce(&S) -> Result<S>,
    ) -> Result<&mut S> {
        if Arc::get_mut(&mut self.storage).is_none() {
            let own = copy(self.storage_as::<S>(op, expected_backend)?)?;
            self.storage = Arc::new(own);
        }
        // Checked before the mutable borrow, so the error (and its strings) is only built on failure.
        if self.storage.as_any().downcast_ref::<S>().is_none() {
            return Err(Error::BackendMismatch {
                op,
                expected: expected_backend.to_string(),
                found: self.storage.backend_name().to_string(),
            });
        }
        Arc::get_mut(&mut self.storage)
            .and_then(|s| s.as_any_mut().downcast_mut::<S>())
            .ok_or_else(|| Error::BackendMismatch {
                op,
                expected: expected_backend.to_string(),
                found: "storage shared after copy-on-write".to_string(),
            })
    }

    /// Downcast the storage to a backend's concrete type, or a [`Error::BackendMismatch`] naming both backends.
    pub fn storage_as<S: Storage>(&self, op: &'static str, expected_backend: &str) -> Result<&S> {
        self.storage
            .as_any()
            .downcast_ref::<S>()
            .ok_or_else(|| Error::BackendMismatch {
                op,
                expected: expected_backend.to_string(),
                found: self.storage.backend_name().to_string(),
            })
    }

    /// Same data, new shape with the same number of elements (no copy).
    pub fn reshape(&self, dims: impl Into<Shape>) -> Result<Tensor> {
        let shape = dims.into();
        let n = shape.checked_elem_count("reshape")?;
        if n != self.elem_count() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "cannot reshape {} ({} elements) to {} ({} elements)",
                    self.shape,
                    self.elem_count(),
                    shape,
                    n
                ),
            ));
        }
        Ok(Tensor {
            shape,
            dtype: self.dtype,
            storage: Arc::clone(&self.storage),
        })
    }

    /// Error unless the tensor has exactly this dtype.
    pub fn expect_dtype(&self, op: &'static str, arg: &str, dtype: DType) -> Result<()> {
        if self.dtype != dtype {
            return Err(Error::DType {
                op,
                detail: format!("`{arg}` has dtype {}, expected {dtype}", self.dtype),
            });
        }
        Ok(())
    }

    /// Error unless the tensor has exactly this rank.
    pub fn expect_rank(&self, op: &'static str, arg: &str, rank: usize) -> Result<()> {
        if self.rank() != rank {
            return Err(Error::shape(
                op,
                format!("`{arg}` must have rank {rank}, got shape {}", self.shape),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor({}, {}, {})",
            self.shape,
            self.dtype,
            self.storage.backend_name()
        )
    }
}
