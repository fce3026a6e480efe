//! One module per op family of [`gato_core::Backend`], each holding the family's `impl` for [`crate::CudaBackend`].

mod attention;

pub use attention::{attention_backward_plan, attention_forward_plan};
mod elementwise;
mod gather_conv;
mod layout;
mod matmul;
mod memory;
mod norm;
mod optim;
