//! The model's layer shapes and parameter counts, from the config alone: the one place they are spelled out
//! (`gato info` prints the counts, `gato bench` derives its FLOP and byte counts from them; the layers built in
//! [`crate::block`] have exactly these shapes, which a test checks against a built model).
//!
//! The counts follow the architecture of `docs/design.md` §5–§6 exactly as gato-rs builds it; the paper's figures
//! (Table 6: 79M / 364M / 1.18B) cannot be reproduced by any reading of the paper (`docs/design.md` §1), so both are
//! shown side by side.

use serde::Serialize;

use gato_core::{ActionLocalPosition, Activation, GatoConfig, Result};

/// The matrix shapes `[in, out]` of one decoder block (App. C.1): the Q, K, V and output projections of attention
/// (`width ↔ heads·kv`) and the two feed-forward matrices (the first twice as wide with GEGLU). Each has a bias of
/// its `out` size; the block's two LayerNorms have a scale and a bias of the width each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockShapes {
    /// Model width.
    pub width: usize,
    /// `[width, heads·kv]`, three times (Q, K, V).
    pub qkv: [usize; 2],
    /// `[heads·kv, width]`.
    pub attention_out: [usize; 2],
    /// `[width, ff]` (`[width, 2·ff]` with GEGLU).
    pub ff_in: [usize; 2],
    /// `[ff, width]`.
    pub ff_out: [usize; 2],
}

impl BlockShapes {
    /// The shapes of `c`'s blocks.
    pub fn of(c: &GatoConfig) -> Self {
        let (w, inner, ff) = (
            c.layer_width,
            c.attention_width(),
            c.feedforward_hidden_size,
        );
        let ff_cols = match c.activation {
            Activation::Gelu => ff,
            Activation::Geglu => 2 * ff,
        };
        BlockShapes {
            width: w,
            qkv: [w, inner],
            attention_out: [inner, w],
            ff_in: [w, ff_cols],
            ff_out: [ff, w],
        }
    }

    /// The six matrices in forward order (Q, K, V, O, FF in, FF out).
    pub fn matrices(&self) -> [[usize; 2]; 6] {
        [
            self.qkv,
            self.qkv,
            self.qkv,
            self.attention_out,
            self.ff_in,
            self.ff_out,
        ]
    }

    /// Entries of the six matrices.
    pub fn matrix_params(&self) -> u64 {
        self.matrices()
            .iter()
            .map(|[i, o]| *i as u64 * *o as u64)
            .sum()
    }

    /// Biases of the six matrices and the two LayerNorms' scales and biases.
    pub fn vector_params(&self) -> u64 {
        let biases: u64 = self.matrices().iter().map(|[_, o]| *o as u64).sum();
        biases + 4 * self.width as u64
    }
}

/// Parameters of one component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentParams {
    /// Component name, e.g. `shared token embedding`.
    pub name: String,
    /// Where it comes from in the paper.
    pub paper_section: String,
    /// Exact parameter count.
    pub params: u64,
}

/// Per-component and total parameter counts of a config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParameterCount {
    /// Components in forward order.
    pub components: Vec<ComponentParams>,
    /// Sum of all components.
    pub total: u64,
    /// Parameters of the transformer blocks only (the figure model-size tables usually quote).
    pub transformer_blocks: u64,
}

/// The figure the paper quotes for a preset (Table 6), if `config` equals that preset's transformer shape.
pub fn paper_parameter_count(config: &GatoConfig) -> Option<(&'static str, u64)> {
    let shape = (
        config.num_transformer_blocks,
        config.num_attention_heads,
        config.layer_width,
        config.feedforward_hidden_size,
        config.key_value_size,
    );
    match shape {
        (8, 24, 768, 3072, 32) => Some(("79M", 79_000_000)),
        (12, 12, 1536, 6144, 128) => Some(("364M", 364_000_000)),
        (24, 16, 2048, 8192, 128) => Some(("1.18B", 1_180_000_000)),
        _ => None,
    }
}

/// Parameters of one transformer block: two LayerNorms, Q/K/V/O with biases, and the feed-forward network.
pub fn block_params(c: &GatoConfig) -> u64 {
    let s = BlockShapes::of(c);
    s.matrix_params() + s.vector_params()
}

/// `a · b` for counts, or an error naming what overflowed (unreachable for configs within
/// [`gato_core::config::limits`], kept so no count is ever computed unchecked).
fn mul(what: &str, a: u64, b: u64) -> Result<u64> {
    a.checked_mul(b).ok_or_else(|| {
        gato_core::Error::invalid(
            "count_parameters",
            format!("{what} overflows 64 bits ({a} × {b})"),
        )
    })
}

/// `a + b` for counts; see [`mul`].
fn add(what: &str, a: u64, b: u64) -> Result<u64> {
    a.checked_add(b).ok_or_else(|| {
        gato_core::Error::invalid(
            "count_parameters",
            format!("{what} overflows 64 bits ({a} + {b})"),
        )
    })
}

/// Count every parameter of the model a config describes (the config is validated first; every product and sum
/// is checked).
pub fn count_parameters(c: &GatoConfig) -> Result<ParameterCount> {
    c.validate()?;
    let layout = c.layout()?;
    let w = c.layer_width as u64;
    let vocab = layout.vocab_size as u64;
    let ch = c.patch_embedding_channels as u64;
    let p = c.img_patch_size as u64;

    let stem = add("stem", mul("stem", c.image_channels as u64, ch)?, ch)?;
    let res_block = add(
        "res block",
        4 * ch,
        2 * add("conv", mul("conv", ch * ch, 9)?, ch)?,
    )?;
    let proj = mul("patch projection", mul("patch projection", ch, p * p)?, w)?;
    let patch = add(
        "patch embedding",
        add(
            "patch embedding",
            stem,
            mul("res blocks", c.num_res_blocks as u64, res_block)?,
        )?,
        add("patch projection", proj, w)?,
    )?;
    let local_rows = c.local_position_encoding_size as u64
        + u64::from(c.action_local_position == ActionLocalPosition::Shared);
    let blocks = mul("blocks", c.num_transformer_blocks as u64, block_params(c))?;
    let table = mul("embedding table", vocab, w)?;
    let head = if c.tie_embeddings { 0 } else { table };

    let components = vec![
        ("shared token embedding", "§2.2", table),
        ("patch embedding (ResNet v2)", "App. C.2", patch),
        (
            "patch position encoding",
            "App. C.3",
            mul("patch positions", 2 * c.position_buckets as u64, w)?,
        ),
        (
            "local position encoding",
            "App. C.3",
            mul("local positions", local_rows, w)?,
        ),
        ("transformer blocks", "App. C.1", blocks),
        ("final layer norm", "§2.2", 2 * w),
        ("output head (untied)", "§2.2", head),
    ];
    let components: Vec<ComponentParams> = components
        .into_iter()
        .map(|(name, s, params)| ComponentParams {
            name: name.to_string(),
            paper_section: s.to_string(),
            params,
        })
        .collect();
    let total = components
        .iter()
        .try_fold(0u64, |acc, c| add("total", acc, c.params))?;
    Ok(ParameterCount {
        components,
        total,
        transformer_blocks: blocks,
    })
}

/// Bytes of the model's f32 parameters (what building it allocates first).
pub fn parameter_bytes(c: &GatoConfig) -> Result<u64> {
    mul("parameter bytes", count_parameters(c)?.total, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent count for `small` written out by hand from the shapes.
    #[test]
    fn small_matches_hand_count() {
        let c = GatoConfig::small();
        let n = count_parameters(&c).unwrap();
        let embed = 33025 * 768;
        let patch = (3 * 64 + 64) + (2 * 128 + 2 * (64 * 64 * 9 + 64)) + 64 * 256 * 768 + 768;
        let pos = 2 * 128 * 768 + 512 * 768;
        let block = 4 * 768 + 4 * (768 * 768 + 768) + (768 * 3072 + 3072) + (3072 * 768 + 768);
        let total = embed + patch + pos + 8 * block + 2 * 768;
        assert_eq!(n.total, total as u64);
        assert_eq!(n.transformer_blocks, 8 * block as u64);
    }

    #[test]
    fn geglu_widens_first_ff_matrix() {
        let mut c = GatoConfig::tiny();
        let gelu = block_params(&c);
        c.activation = Activation::Geglu;
        assert_eq!(block_params(&c) - gelu, (64 * 256 + 256) as u64);
    }

    #[test]
    fn untied_head_adds_vocab_by_width() {
        let mut c = GatoConfig::tiny();
        let tied = count_parameters(&c).unwrap().total;
        c.tie_embeddings = false;
        assert_eq!(count_parameters(&c).unwrap().total - tied, 33025 * 64);
    }
}
