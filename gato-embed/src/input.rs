//! The input embedding: the sum of the four contributions (§2.2, design.md §5).

use gato_core::{
    Backend, BinaryOp, Embedding, EmbeddingMode, GatoConfig, ParamSource, Result, Tensor,
    TokenBatch,
};

use crate::{DiscreteEmbedding, LocalPositionEncoding, PatchPositionEncoding, ResidualEmbedding};

/// Σ of shared lookup, ResNet patch embedding, patch position and local position.
pub struct InputEmbedding {
    /// The shared table (also the tied output head).
    pub discrete: DiscreteEmbedding,
    /// The ResNet patch embedding.
    pub patch: ResidualEmbedding,
    /// Patch position encoding.
    pub patch_position: PatchPositionEncoding,
    /// Local position encoding.
    pub local_position: LocalPositionEncoding,
}

impl InputEmbedding {
    /// All four, in the order their parameters are drawn.
    pub fn new(src: &mut dyn ParamSource, config: &GatoConfig) -> Result<Self> {
        Ok(InputEmbedding {
            discrete: DiscreteEmbedding::new(src, config)?,
            patch: ResidualEmbedding::new(src, config)?,
            patch_position: PatchPositionEncoding::new(src, config)?,
            local_position: LocalPositionEncoding::new(src, config)?,
        })
    }

    /// The contributions as trait objects.
    pub fn contributions(&self) -> [&dyn Embedding; 4] {
        [
            &self.discrete,
            &self.patch,
            &self.patch_position,
            &self.local_position,
        ]
    }

    /// `[B, T, width]`: the sum of every contribution. The batch is validated first.
    pub fn forward(
        &self,
        backend: &dyn Backend,
        batch: &TokenBatch,
        mode: EmbeddingMode,
    ) -> Result<Tensor> {
        batch.validate(self.patch.patch_len())?;
        let mut sum: Option<Tensor> = None;
        // A contribution that is zero everywhere in this batch adds nothing (x + 0 = x): skipped.
        for c in self.contributions() {
            if !c.applies_to(batch) && sum.is_some() {
                continue;
            }
            let x = c.forward(backend, batch, mode)?;
            sum = Some(match sum {
                None => x,
                Some(s) => backend.binary(BinaryOp::Add, &s, &x)?,
            });
        }
        Ok(sum.expect("four contributions"))
    }

    /// The gradients of every parameter the batch reaches, by checkpoint name, given `dy` (`[B, T, width]`), the
    /// gradient of the summed embedding (each contribution's backward, design.md §8). Contributions that do not
    /// apply to the batch (the image ones on a text-free, image-free batch) give none.
    pub fn backward(
        &self,
        backend: &dyn Backend,
        batch: &TokenBatch,
        mode: EmbeddingMode,
        dy: &Tensor,
    ) -> Result<Vec<(String, Tensor)>> {
        let mut grads = Vec::new();
        for c in self.contributions() {
            if c.applies_to(batch) {
                grads.extend(c.backward(backend, batch, mode, dy)?);
            }
        }
        Ok(grads)
    }

    /// Every parameter with its checkpoint name.
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.contributions()
            .iter()
            .flat_map(|c| c.parameters())
            .collect()
    }
}
