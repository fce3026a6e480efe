//! Named gradients (design.md §8): one tensor per parameter that a batch reached, under the parameter's checkpoint
//! name; contributions to one parameter (the shared table through the embedding and the tied head) are summed.

use std::collections::BTreeMap;

use gato_core::{Backend, BinaryOp, Result, Tensor};

/// Gradients by parameter name.
#[derive(Debug, Default, Clone)]
pub struct Gradients(BTreeMap<String, Tensor>);

impl Gradients {
    /// Add `g` into the gradient of `name`.
    pub fn add(&mut self, be: &dyn Backend, name: impl Into<String>, g: Tensor) -> Result<()> {
        let name = name.into();
        let sum = match self.0.remove(&name) {
            Some(old) => be.binary(BinaryOp::Add, &old, &g)?,
            None => g,
        };
        self.0.insert(name, sum);
        Ok(())
    }

    /// Add every `(name, gradient)`.
    pub fn extend(&mut self, be: &dyn Backend, grads: Vec<(String, Tensor)>) -> Result<()> {
        for (n, g) in grads {
            self.add(be, n, g)?;
        }
        Ok(())
    }

    /// The gradient of `name`, if the batch reached that parameter.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.0.get(name)
    }

    /// Every gradient, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.0.iter()
    }

    /// How many parameters have a gradient.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no parameter has a gradient.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
