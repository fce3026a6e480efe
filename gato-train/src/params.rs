//! Parameters as named tensors, and a model built over them without copying.

use std::collections::BTreeMap;

use gato_core::{Error, Init, ParamSource, Result, Shape, Tensor};

/// Named parameters; as a [`ParamSource`] it hands each tensor to the model being built (shapes checked).
#[derive(Debug, Clone, Default)]
pub struct ParamMap(pub BTreeMap<String, Tensor>);

impl ParamMap {
    /// The parameters of a model, by checkpoint name.
    pub fn from_model(model: &gato_transformer::GatoTransformer) -> Self {
        ParamMap(model.parameters().into_iter().collect())
    }
}

impl ParamSource for ParamMap {
    fn param(&mut self, name: &str, shape: &Shape, _init: Init) -> Result<Tensor> {
        let t = self.0.get(name).ok_or_else(|| {
            Error::invalid(
                "ParamMap",
                format!("no parameter `{name}` (expected {shape})"),
            )
        })?;
        if t.shape() != shape {
            return Err(Error::shape(
                "ParamMap",
                format!(
                    "parameter `{name}` is {}, the model needs {shape}",
                    t.shape()
                ),
            ));
        }
        Ok(t.clone())
    }
}
