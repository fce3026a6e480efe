//! The small layers the decoder is built from: `Linear` (`x·W + b`, W stored `[in, out]`) and `LayerNorm`.

use gato_core::{
    Backend, DType, Init, MatmulPrecision, MatmulSpec, ParamSource, Result, Shape, Tensor,
};

use crate::gradients::Gradients;

/// `y = x · W + b`, `W: [in, out]`.
pub struct Linear {
    /// Weight `[in, out]`.
    pub weight: Tensor,
    /// Bias `[out]`.
    pub bias: Tensor,
}

impl Linear {
    /// Parameters `{name}.weight` and `{name}.bias`.
    pub fn new(
        src: &mut dyn ParamSource,
        name: &str,
        inp: usize,
        out: usize,
        std: f32,
    ) -> Result<Self> {
        Ok(Linear {
            weight: src.param(
                &format!("{name}.weight"),
                &Shape::from([inp, out]),
                Init::Normal(std),
            )?,
            bias: src.param(&format!("{name}.bias"), &Shape::from([out]), Init::Zeros)?,
        })
    }

    /// `x: [..., in]` → `[..., out]`.
    pub fn forward(&self, backend: &dyn Backend, x: &Tensor) -> Result<Tensor> {
        backend.linear(x, &self.weight, Some(&self.bias))
    }

    /// The backward of [`Self::forward`] for `x: [.., in]` and `dy: [.., out]`: adds `dW = xᵀ·dy` and
    /// `db = Σ dy` under `{name}.weight` / `{name}.bias`, returns `dx = dy·Wᵀ`. With a 16-bit weight (mixed
    /// precision, design.md §8) both products take 16-bit operands: `dy` is rounded to the weight's type for
    /// `dW` (so a tensor-core backend multiplies bf16 × bf16 there too); sums stay f32 and `dW` is f32.
    pub fn backward(
        &self,
        be: &dyn Backend,
        x: &Tensor,
        dy: &Tensor,
        name: &str,
        grads: &mut Gradients,
    ) -> Result<Tensor> {
        let (inp, out) = (self.weight.dims()[0], self.weight.dims()[1]);
        let rows = x.elem_count() / inp.max(1);
        let (x2, dy2) = (x.reshape([rows, inp])?, dy.reshape([rows, out])?);
        let tn = MatmulSpec {
            trans_a: true,
            ..Default::default()
        };
        let dw = match self.weight.dtype() {
            DType::F32 => be.matmul(&x2, &dy2, &tn)?,
            half => be.matmul(&x2, &be.cast(&dy2, half)?, &tn)?,
        };
        grads.add(be, format!("{name}.weight"), dw)?;
        grads.add(be, format!("{name}.bias"), be.sum_rows(&dy2)?)?;
        be.matmul(&dy2, &self.weight, &MatmulSpec::nt())?
            .reshape(x.dims())
    }

    /// Store the weight as `dtype` (f32, f16 or bf16); products still accumulate in f32 and the bias stays f32.
    pub fn cast_weight(&mut self, backend: &dyn Backend, dtype: DType) -> Result<()> {
        if self.weight.dtype() != dtype {
            self.weight = backend.cast(&self.weight, dtype)?;
        }
        Ok(())
    }

    /// Lay the weight out for products with few rows, run at `precision`, where the backend has such a layout
    /// ([`gato_core::MatmulOps::pack_weight`]); values stay the same, and so do results at [`MatmulPrecision::F32`]. Returns
    /// whether the backend had one.
    pub fn pack_weight(
        &mut self,
        backend: &dyn Backend,
        precision: MatmulPrecision,
    ) -> Result<bool> {
        match backend.pack_weight(&self.weight, precision)? {
            Some(p) => {
                self.weight = p;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Named parameters.
    pub fn parameters(&self, name: &str) -> Vec<(String, Tensor)> {
        vec![
            (format!("{name}.weight"), self.weight.clone()),
            (format!("{name}.bias"), self.bias.clone()),
        ]
    }
}

/// Each row's mean and `1/√(var + eps)`, saved by [`LayerNorm::forward_train`] for its backward.
pub struct NormStats {
    mean: Tensor,
    rstd: Tensor,
}

/// LayerNorm over the last dim (eps 1e-5 by default).
pub struct LayerNorm {
    /// γ `[width]`.
    pub weight: Tensor,
    /// β `[width]`.
    pub bias: Tensor,
    /// ε.
    pub eps: f32,
}

impl LayerNorm {
    /// Parameters `{name}.weight` (ones) and `{name}.bias` (zeros).
    pub fn new(src: &mut dyn ParamSource, name: &str, width: usize, eps: f32) -> Result<Self> {
        Ok(LayerNorm {
            weight: src.param(&format!("{name}.weight"), &Shape::from([width]), Init::Ones)?,
            bias: src.param(&format!("{name}.bias"), &Shape::from([width]), Init::Zeros)?,
            eps,
        })
    }

    /// Normalise the last dim.
    pub fn forward(&self, backend: &dyn Backend, x: &Tensor) -> Result<Tensor> {
        backend.layer_norm(x, &self.weight, &self.bias, self.eps)
    }

    /// [`Self::forward`] that also returns the statistics its backward needs.
    pub fn forward_train(&self, be: &dyn Backend, x: &Tensor) -> Result<(Tensor, NormStats)> {
        let (y, mean, rstd) = be.layer_norm_train(x, &self.weight, &self.bias, self.eps)?;
        Ok((y, NormStats { mean, rstd }))
    }

    /// The backward at input `x` from the statistics [`Self::forward_train`] saved: adds `dγ`, `dβ` under
    /// `{name}.weight` / `{name}.bias`, returns `dx`.
    pub fn backward(
        &self,
        be: &dyn Backend,
        x: &Tensor,
        stats: &NormStats,
        dy: &Tensor,
        name: &str,
        grads: &mut Gradients,
    ) -> Result<Tensor> {
        let (dx, dg, db) = be.layer_norm_backward(dy, x, &self.weight, &stats.mean, &stats.rstd)?;
        grads.add(be, format!("{name}.weight"), dg)?;
        grads.add(be, format!("{name}.bias"), db)?;
        Ok(dx)
    }

    /// Named parameters.
    pub fn parameters(&self, name: &str) -> Vec<(String, Tensor)> {
        vec![
            (format!("{name}.weight"), self.weight.clone()),
            (format!("{name}.bias"), self.bias.clone()),
        ]
    }
}
