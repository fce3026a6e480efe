//! `DiscreteEmbedding`: the shared lookup table for text, discrete, continuous and separator tokens (§2.2, design.md §5).
//! Its transpose is also the output head when embeddings are tied (§2.2).

use crate::gather::{gather, position_rows};
use gato_core::{
    Backend, Embedding, EmbeddingMode, GatoConfig, HostSlice, Init, Modality, ParamSource, Result,
    Shape, Tensor, TokenBatch,
};

/// One table of `vocabulary × width` rows.
pub struct DiscreteEmbedding {
    table: Tensor,
    vocab: usize,
}

/// Parameter name of the shared table.
pub const TOKENS_PARAM: &str = "embed.tokens";

impl DiscreteEmbedding {
    /// The table `embed.tokens` `[vocab, width]`, N(0, 0.02²).
    pub fn new(src: &mut dyn ParamSource, config: &GatoConfig) -> Result<Self> {
        let vocab = config.layout()?.vocab_size as usize;
        let table = src.param(
            TOKENS_PARAM,
            &Shape::from([vocab, config.layer_width]),
            Init::Normal(0.02),
        )?;
        Ok(DiscreteEmbedding { table, vocab })
    }

    /// The table, `[vocab, width]`.
    pub fn table(&self) -> &Tensor {
        &self.table
    }

    /// Rows of `ids` (any id < vocab, or `PAD_ID` for zero), as `[ids.len(), width]`.
    pub fn embed_ids(&self, backend: &dyn Backend, ids: &[u32]) -> Result<Tensor> {
        let t = backend.upload(HostSlice::U32(ids), &Shape::from([ids.len()]))?;
        backend.embedding(&self.table, &t)
    }
}

impl Embedding for DiscreteEmbedding {
    fn name(&self) -> &str {
        "discrete"
    }

    fn forward(
        &self,
        backend: &dyn Backend,
        batch: &TokenBatch,
        _mode: EmbeddingMode,
    ) -> Result<Tensor> {
        let rows = position_rows(batch, |i| {
            Ok((batch.modality[i] != Modality::Image).then_some(batch.ids[i]))
        })?;
        gather(backend, &self.table, batch, &rows)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![(TOKENS_PARAM.to_string(), self.table.clone())]
    }

    fn backward(
        &self,
        backend: &dyn Backend,
        batch: &TokenBatch,
        _mode: EmbeddingMode,
        dy: &Tensor,
    ) -> Result<Vec<(String, Tensor)>> {
        let rows = position_rows(batch, |i| {
            Ok((batch.modality[i] != Modality::Image).then_some(batch.ids[i]))
        })?;
        let g = crate::gather::gather_backward(backend, self.vocab, batch, &rows, dy)?;
        Ok(vec![(TOKENS_PARAM.to_string(), g)])
    }
}

impl std::fmt::Debug for DiscreteEmbedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DiscreteEmbedding({} × {})",
            self.vocab,
            self.table.dims().get(1).unwrap_or(&0)
        )
    }
}
