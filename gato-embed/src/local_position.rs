//! `LocalPositionEncoding` (App. C.3, Fig. 18): a learned row per position of a token among the observation tokens
//! of its timestep. Actions and the separator get none by default; with `action_local_position = shared` they all
//! use one extra row (index `local_position_encoding_size`).

use crate::gather::{gather, position_rows, PositionRows};
use gato_core::{
    ActionLocalPosition, Backend, Embedding, EmbeddingMode, Error, GatoConfig, Init, ParamSource,
    Result, Shape, Tensor, TokenBatch,
};

/// Parameter name of the table.
pub const LOCAL_POSITION_PARAM: &str = "embed.local_position";

/// The local position table.
pub struct LocalPositionEncoding {
    table: Tensor,
    rows: usize,
}

impl LocalPositionEncoding {
    /// `embed.local_position` `[rows, width]` with rows = 512 (+1 when actions share a row).
    pub fn new(src: &mut dyn ParamSource, config: &GatoConfig) -> Result<Self> {
        let rows = config.local_position_encoding_size
            + usize::from(config.action_local_position == ActionLocalPosition::Shared);
        let table = src.param(
            LOCAL_POSITION_PARAM,
            &Shape::from([rows, config.layer_width]),
            Init::Normal(0.02),
        )?;
        Ok(LocalPositionEncoding { table, rows })
    }

    /// Index of each position in the table, or `PAD_ID`.
    pub fn indices(&self, batch: &TokenBatch) -> Result<PositionRows> {
        position_rows(batch, |i| match batch.local_position[i] {
            Some(p) if p as usize >= self.rows => Err(Error::OutOfRange {
                op: "LocalPositionEncoding",
                what: format!("local_position[{i}]"),
                value: p.to_string(),
                allowed: format!("[0, {})", self.rows),
            }),
            other => Ok(other),
        })
    }
}

impl Embedding for LocalPositionEncoding {
    fn name(&self) -> &str {
        "local_position"
    }

    fn forward(
        &self,
        backend: &dyn Backend,
        batch: &TokenBatch,
        _mode: EmbeddingMode,
    ) -> Result<Tensor> {
        let rows = self.indices(batch)?;
        gather(backend, &self.table, batch, &rows)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![(LOCAL_POSITION_PARAM.to_string(), self.table.clone())]
    }

    fn backward(
        &self,
        backend: &dyn Backend,
        batch: &TokenBatch,
        _mode: EmbeddingMode,
        dy: &Tensor,
    ) -> Result<Vec<(String, Tensor)>> {
        let rows = self.indices(batch)?;
        let g = crate::gather::gather_backward(backend, self.table.dims()[0], batch, &rows, dy)?;
        Ok(vec![(LOCAL_POSITION_PARAM.to_string(), g)])
    }
}
