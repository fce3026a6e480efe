//! Weights laid out ahead of time for products with few rows (acting, design.md §7): [`CpuPackedWeight`], made by
//! [`gato_core::MatmulOps::pack_weight`].
//!
//! Every small-M product packs 64-column panels of the row-major weight into 16-column strips (`small_m`). The
//! panel's rows lie `N` elements apart, a pattern the hardware prefetchers follow poorly, so with the weight
//! coming from memory the packing pass waits on it; strips laid out once are read as one sequential stream
//! instead. One row (a decoded token) gains too: each thread reads its run of panels front to back, with no
//! partial sums to add. (Figures: `docs/benchmarks.md`.) A packed weight keeps
//! both layouts — the strips for `linear`/`linear_act`, the original for every other op — so it costs the
//! weight's memory twice.
//!
//! A bf16 weight packed for [`MatmulPrecision::Bf16`] on a CPU with AVX512_BF16 holds row-pair strips instead
//! (`bf16_pairs`): its products round the activations to bf16 and run `vdpbf16ps`, at about twice the f32 FMA
//! rate (`cargo bench -p gato-cpu --bench ops` measures both).

use std::any::Any;

use half::{bf16, f16};

use crate::acting::bf16_pairs::{self, PairStrips};
use crate::matmul::small_m::{self, PackedView, Weights};
use crate::storage::CPU_BACKEND_NAME;
use gato_core::backend::{MatmulPrecision, UnaryOp};
use gato_core::tensor::{Storage, Tensor};

/// The strips, in the weight's own dtype (f16/bf16 strips are widened per panel while the product runs).
#[derive(Debug)]
enum Strips {
    /// f32 values from index `skew` (64-byte aligned).
    F32 { data: Vec<f32>, skew: usize },
    /// f16 values.
    F16(Vec<f16>),
    /// bf16 values.
    BF16(Vec<bf16>),
    /// bf16 row pairs for bf16 × bf16 products.
    Pairs(PairStrips),
}

/// A linear map's weight `[K, N]` in two layouts: the original tensor, which every op but `linear`/`linear_act`
/// reads, and 16-column strips for those products.
#[derive(Debug)]
pub struct CpuPackedWeight {
    original: Tensor,
    k: usize,
    n: usize,
    strips: Strips,
}

impl CpuPackedWeight {
    /// Lay `original` (`[K, N]`, whose values `w` holds) out for products at `precision`: row-pair strips for a
    /// bf16 weight at [`MatmulPrecision::Bf16`] where the CPU has the bf16 kernel, strips of the weight's own
    /// dtype otherwise.
    pub(crate) fn new(
        original: Tensor,
        w: Weights<'_>,
        k: usize,
        n: usize,
        precision: MatmulPrecision,
    ) -> Self {
        let strips = match w {
            Weights::BF16(_) if precision == MatmulPrecision::Bf16 && bf16_pairs::available() => {
                Strips::Pairs(PairStrips::new(w, k, n))
            }
            _ => {
                let (data, skew) = small_m::pack_strips(w, k, n);
                match w {
                    Weights::F32(_) => Strips::F32 { data, skew },
                    // Exact: every value came from an f16 / a bf16.
                    Weights::F16(_) => {
                        Strips::F16(data[skew..].iter().map(|&v| f16::from_f32(v)).collect())
                    }
                    Weights::BF16(_) => {
                        Strips::BF16(data[skew..].iter().map(|&v| bf16::from_f32(v)).collect())
                    }
                }
            }
        };
        CpuPackedWeight {
            original,
            k,
            n,
            strips,
        }
    }

    /// The precision its products run at: [`MatmulPrecision::Bf16`] only where it was asked for, the weight is
    /// bf16 and this CPU has AVX512_BF16.
    pub fn precision(&self) -> MatmulPrecision {
        match self.strips {
            Strips::Pairs(_) => MatmulPrecision::Bf16,
            _ => MatmulPrecision::F32,
        }
    }

    /// The tensor this was packed from.
    pub fn original(&self) -> &Tensor {
        &self.original
    }

    /// `[K, N]`.
    pub(crate) fn dims(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// `out[rows, N] = act(alpha · x[rows, K] · w + bias)` from the laid-out strips (`out` is overwritten).
    pub(crate) fn product(
        &self,
        out: &mut [f32],
        x: &[f32],
        rows: usize,
        alpha: f32,
        bias: Option<&[f32]>,
        act: Option<UnaryOp>,
    ) {
        let (k, n) = (self.k, self.n);
        let len = small_m::strips_len(k, n);
        let view = match &self.strips {
            Strips::Pairs(p) => return bf16_pairs::matmul(out, x, p, rows, alpha, bias, act),
            Strips::F32 { data, skew } => PackedView::F32(&data[*skew..*skew + len]),
            Strips::F16(d) => PackedView::F16(&d[..len]),
            Strips::BF16(d) => PackedView::BF16(&d[..len]),
        };
        small_m::matmul_packed(out, x, view, rows, k, n, alpha, bias, act)
    }
}

impl Storage for CpuPackedWeight {
    fn backend_name(&self) -> &str {
        CPU_BACKEND_NAME
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn size_in_bytes(&self) -> usize {
        let strips = match &self.strips {
            Strips::F32 { data, .. } => data.len() * 4,
            Strips::F16(d) => d.len() * 2,
            Strips::BF16(d) => d.len() * 2,
            Strips::Pairs(p) => p.size_in_bytes(),
        };
        self.original.storage().size_in_bytes() + strips
    }
}
