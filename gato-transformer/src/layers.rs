//! The small layers the decoder is built from: `Linear` (`x·W + b`, W stored `[in, out]`) and `LayerNorm`.

use gato_core::{Backend, DType, Init, MatmulPrecision, ParamSource, Result, Shape, Tensor};

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

    /// Named parameters.
    pub fn parameters(&self, name: &str) -> Vec<(String, Tensor)> {
        vec![
            (format!("{name}.weight"), self.weight.clone()),
            (format!("{name}.bias"), self.bias.clone()),
        ]
    }
}
