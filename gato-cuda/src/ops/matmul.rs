//! Matrix products ([`gato_core::MatmulOps`]) through cuBLAS strided-batched GEMMs: full f32 (no TF32), or
//! f16/bf16 weights with f32 accumulation.

use gato_core::{ops, Error, MatmulOps, MatmulSpec, MemoryOps, Result, Tensor};

use crate::backend::*;
use crate::storage::CudaStorage;

impl MatmulOps for CudaBackend {
    /// Tensor cores: bf16 × bf16 products with f32 accumulation (`cublasGemmStridedBatchedEx`).
    fn fast_bf16_products(&self) -> bool {
        true
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
}
