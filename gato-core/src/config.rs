//! `GatoConfig`: every hyper-parameter of the model, the token space and training, with the paper's presets.
//!
//! Field names follow the TensorFlow port users arrive from (design.md §0). Each choice the paper leaves open is a field
//! whose default is the one recorded in `docs/design.md`; [`GatoConfig::validate`] checks every rule and names the field,
//! the value and the rule when one is broken. On disk a config is JSON (`config.json` beside a checkpoint); unknown
//! fields are rejected so that a typo never silently falls back to a default.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::TokenLayout;

/// Feed-forward activation of the transformer blocks (design.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `W2 · gelu(W1 x)`, exact erf GELU (default; every working port uses it).
    Gelu,
    /// `W2 · (gelu(W1a x) ⊙ W1b x)`, the gated form App. C.1 names; the first matrix is twice as wide.
    Geglu,
}

/// How action tokens (and the separator) take part in the local position encoding (design.md §5, App. C.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionLocalPosition {
    /// Action tokens and the separator get no local position contribution (default, Fig. 18).
    None,
    /// All action tokens share one extra learned row.
    Shared,
}

/// Optimiser and schedule settings (design.md §8, App. D). Kept with the model config so a checkpoint records how it was
/// trained; nothing in inference reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Peak learning rate after warm-up (1e-4).
    pub learning_rate: f64,
    /// Learning rate at step 0 of the linear warm-up (1e-7).
    pub initial_learning_rate: f64,
    /// Linear warm-up steps (15 000).
    pub warmup_steps: usize,
    /// Cosine decay divides the peak rate by this factor over the run (10).
    pub cosine_decay_factor: f64,
    /// AdamW β₁ (0.9).
    pub adam_beta1: f64,
    /// AdamW β₂ (0.95).
    pub adam_beta2: f64,
    /// AdamW ε (1e-8).
    pub adam_epsilon: f64,
    /// AdamW decoupled weight decay (0.1).
    pub weight_decay: f64,
    /// Sequences per batch (512 in the paper).
    pub batch_size: usize,
    /// Global-norm gradient clipping; 0 disables (1.0; not in the paper).
    pub gradient_clip_norm: f64,
    /// Probability that a training sequence is prefixed by a prompt from another episode of the task (0.25, §2.3).
    pub prompt_probability: f64,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            learning_rate: 1e-4,
            initial_learning_rate: 1e-7,
            warmup_steps: 15_000,
            cosine_decay_factor: 10.0,
            adam_beta1: 0.9,
            adam_beta2: 0.95,
            adam_epsilon: 1e-8,
            weight_decay: 0.1,
            batch_size: 512,
            gradient_clip_norm: 1.0,
            prompt_probability: 0.25,
        }
    }
}

/// The complete configuration of a Gato model (paper §2, App. B–C; design.md §1–§8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatoConfig {
    // ---- transformer (App. C.1, design.md §6) ----
    /// Number of decoder blocks (8 / 12 / 24 for small / baseline / large).
    pub num_transformer_blocks: usize,
    /// Attention heads per block.
    pub num_attention_heads: usize,
    /// Model width: size of every token embedding and of the residual stream.
    pub layer_width: usize,
    /// Hidden size of the feed-forward network.
    pub feedforward_hidden_size: usize,
    /// Per-head key/value size; attention projects `width → heads·kv` and back, so `heads·kv` need not equal width.
    pub key_value_size: usize,
    /// Feed-forward activation (`gelu` default, `geglu` optional).
    pub activation: Activation,
    /// Dropout rate in training (0.1); always off at inference.
    pub dropout_rate: f64,
    /// LayerNorm epsilon (1e-5).
    pub layer_norm_eps: f64,
    /// Output logits use the shared token embedding table transposed (true).
    pub tie_embeddings: bool,
    /// Context window `L` in tokens for training sequences and the KV cache (1024).
    pub token_sequence_length: usize,

    // ---- token space (§2.1, design.md §2) ----
    /// Text ids occupy `[0, text_vocabulary_size)` (32000).
    pub text_vocabulary_size: usize,
    /// Discrete values are integers in `[0, discrete_values_size)` (1024).
    pub discrete_values_size: usize,
    /// Token of discrete value `v` is `v + discrete_offset` (0: the paper's literal reading, sharing text rows;
    /// `text_vocabulary_size`: share the continuous block).
    pub discrete_offset: usize,
    /// Number of uniform bins for continuous values (1024), placed right after the text block.
    pub continuous_values_size: usize,
    /// Separator `|` id; `None` = the first id after the continuous block (33024).
    pub separator_token: Option<usize>,
    /// Whether the separator is a prediction target in the loss mask (false).
    pub separator_is_target: bool,
    /// mu-law companding μ (100, App. B).
    pub mu_law_mu: f64,
    /// mu-law companding M (256, App. B).
    pub mu_law_m: f64,

    // ---- images and embeddings (App. C.2–C.3, design.md §3, §5) ----
    /// Square patch side in pixels (16).
    pub img_patch_size: usize,
    /// Image channels the patch embedding expects (3 RGB; 1 grayscale; 4 frame stacks).
    pub image_channels: usize,
    /// Channels of the ResNet patch embedding (64).
    pub patch_embedding_channels: usize,
    /// GroupNorm groups in the ResNet patch embedding (32).
    pub num_group_norm_groups: usize,
    /// Pre-activation residual blocks in the patch embedding (1: the paper's "single ResNet block").
    pub num_res_blocks: usize,
    /// Row and column buckets of the patch position encoding (128).
    pub position_buckets: usize,
    /// Rows of the local position table (512).
    pub local_position_encoding_size: usize,
    /// Local position of action tokens (`none` default, or `shared`).
    pub action_local_position: ActionLocalPosition,

    // ---- training (§2.3, App. D, design.md §8) ----
    /// Optimiser, schedule and prompting settings.
    pub training: TrainingConfig,
}

/// Upper bounds of the size fields, checked by [`GatoConfig::validate`]. Far above any Gato (the paper's `large` has
/// 24 blocks of width 2048 and a 1024-token window), and low enough that no count or byte size computed from them
/// overflows 64 bits, so a typo such as `layer_width: 2^40` is an error naming the field instead of an allocation
/// that aborts the process.
pub mod limits {
    /// `num_transformer_blocks`.
    pub const BLOCKS: usize = 1024;
    /// `num_attention_heads`.
    pub const HEADS: usize = 1024;
    /// `layer_width`.
    pub const WIDTH: usize = 65_536;
    /// `feedforward_hidden_size`.
    pub const FEEDFORWARD: usize = 262_144;
    /// `key_value_size`.
    pub const KEY_VALUE: usize = 4096;
    /// `token_sequence_length` (the context window).
    pub const CONTEXT: usize = 65_536;
    /// The vocabulary: every token id, the separator included, lies below it.
    pub const VOCABULARY: usize = 1 << 22;
    /// `img_patch_size`.
    pub const PATCH: usize = 256;
    /// `patch_embedding_channels`.
    pub const PATCH_CHANNELS: usize = 4096;
    /// `num_res_blocks`.
    pub const RES_BLOCKS: usize = 64;
    /// `position_buckets`.
    pub const POSITION_BUCKETS: usize = 65_536;
    /// `local_position_encoding_size`.
    pub const LOCAL_POSITIONS: usize = 65_536;
    /// `training.batch_size`.
    pub const BATCH: usize = 1 << 20;
}

/// Names of the built-in presets, in size order.
pub const PRESET_NAMES: [&str; 5] = ["tiny", "nano", "small", "baseline", "large"];

impl GatoConfig {
    fn with_transformer(blocks: usize, heads: usize, width: usize, ff: usize, kv: usize) -> Self {
        GatoConfig {
            num_transformer_blocks: blocks,
            num_attention_heads: heads,
            layer_width: width,
            feedforward_hidden_size: ff,
            key_value_size: kv,
            activation: Activation::Gelu,
            dropout_rate: 0.1,
            layer_norm_eps: 1e-5,
            tie_embeddings: true,
            token_sequence_length: 1024,
            text_vocabulary_size: 32_000,
            discrete_values_size: 1024,
            discrete_offset: 0,
            continuous_values_size: 1024,
            separator_token: None,
            separator_is_target: false,
            mu_law_mu: 100.0,
            mu_law_m: 256.0,
            img_patch_size: 16,
            image_channels: 3,
            patch_embedding_channels: 64,
            num_group_norm_groups: 32,
            num_res_blocks: 1,
            position_buckets: 128,
            local_position_encoding_size: 512,
            action_local_position: ActionLocalPosition::None,
            training: TrainingConfig::default(),
        }
    }

    /// Gato 79M (App. C.1, Table 6): 8 blocks, 24 heads, width 768, FF 3072, k/v 32.
    pub fn small() -> Self {
        Self::with_transformer(8, 24, 768, 3072, 32)
    }

    /// Gato 364M (App. C.1, Table 6): 12 blocks, 12 heads, width 1536, FF 6144, k/v 128.
    pub fn baseline() -> Self {
        Self::with_transformer(12, 12, 1536, 6144, 128)
    }

    /// Gato 1.18B (App. C.1, Table 6): 24 blocks, 16 heads, width 2048, FF 8192, k/v 128.
    pub fn large() -> Self {
        Self::with_transformer(24, 16, 2048, 8192, 128)
    }

    /// A small model for tests (design.md §1): 2 blocks, 4 heads, width 64, FF 256, k/v 16, and a 16-channel patch
    /// embedding with 4 GroupNorm groups. The token space is the paper's, so real episodes tokenize unchanged.
    pub fn tiny() -> Self {
        let mut c = Self::with_transformer(2, 4, 64, 256, 16);
        c.patch_embedding_channels = 16;
        c.num_group_norm_groups = 4;
        c
    }

    /// A model that trains in minutes on two CPU cores (design.md §1): 4 blocks, 4 heads, width 128, FF 512,
    /// k/v 32, a 512-token context, a 32-channel patch embedding with 8 GroupNorm groups; the paper's token space.
    /// Its training settings suit short runs: warm-up 100 steps to 1e-3, batch 16.
    pub fn nano() -> Self {
        let mut c = Self::with_transformer(4, 4, 128, 512, 32);
        c.token_sequence_length = 512;
        c.patch_embedding_channels = 32;
        c.num_group_norm_groups = 8;
        c.training.learning_rate = 1e-3;
        c.training.initial_learning_rate = 1e-6;
        c.training.warmup_steps = 100;
        c.training.batch_size = 16;
        c
    }

    /// The preset with this name (`tiny`, `nano`, `small`, `baseline`, `large`).
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "tiny" => Some(Self::tiny()),
            "nano" => Some(Self::nano()),
            "small" => Some(Self::small()),
            "baseline" => Some(Self::baseline()),
            "large" => Some(Self::large()),
            _ => None,
        }
    }

    /// A preset by name, or else a JSON config file at that path. The result is validated.
    pub fn from_name_or_path(name: &str) -> Result<Self> {
        if let Some(c) = Self::preset(name) {
            return Ok(c);
        }
        let path = Path::new(name);
        if path.exists() {
            return Self::load(path);
        }
        Err(Error::UnknownPreset {
            name: name.to_string(),
            expected: PRESET_NAMES.join(", "),
        })
    }

    /// Parse and validate a config from JSON text.
    pub fn from_json(text: &str) -> Result<Self> {
        let c: GatoConfig = serde_json::from_str(text).map_err(|e| Error::ConfigFile {
            path: "<json>".into(),
            reason: e.to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Read and validate a `config.json`. I/O and JSON errors name the file (and line/column); rule violations
    /// name the field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::ConfigFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let c: GatoConfig = serde_json::from_str(&text).map_err(|e| Error::ConfigFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Pretty JSON, the on-disk form.
    pub fn to_json(&self) -> String {
        // Serialising plain numbers, strings and enums cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Write the config as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_json() + "\n").map_err(|e| Error::WriteFile {
            path: path.to_path_buf(),
            reason: match path.parent() {
                Some(d) if !d.as_os_str().is_empty() && !d.is_dir() => {
                    format!("the directory {} does not exist", d.display())
                }
                _ => e.to_string(),
            },
        })
    }

    /// The token space this config defines (design.md §2). Errors exactly when [`validate`](Self::validate) finds a
    /// token-space problem.
    pub fn layout(&self) -> Result<TokenLayout> {
        TokenLayout::from_config(self)
    }

    /// Inner width of attention, `heads · kv`.
    pub fn attention_width(&self) -> usize {
        self.num_attention_heads * self.key_value_size
    }

    /// Check every rule; the first broken one is returned with the field, the value and the rule.
    pub fn validate(&self) -> Result<()> {
        fn bounded(field: &str, value: usize, min: usize, max: usize) -> Result<()> {
            if !(min..=max).contains(&value) {
                return Err(Error::config(
                    field,
                    value,
                    format!("must lie in [{min}, {max}]"),
                ));
            }
            Ok(())
        }
        fn in_range(field: &str, value: f64, lo: f64, hi: f64, hi_inclusive: bool) -> Result<()> {
            let ok =
                value.is_finite() && value >= lo && (value < hi || (hi_inclusive && value == hi));
            if !ok {
                let close = if hi_inclusive { ']' } else { ')' };
                return Err(Error::config(
                    field,
                    value,
                    format!("must lie in [{lo}, {hi}{close}"),
                ));
            }
            Ok(())
        }
        fn positive(field: &str, value: f64) -> Result<()> {
            if !(value.is_finite() && value > 0.0) {
                return Err(Error::config(
                    field,
                    value,
                    "must be finite and greater than 0",
                ));
            }
            Ok(())
        }

        bounded(
            "num_transformer_blocks",
            self.num_transformer_blocks,
            1,
            limits::BLOCKS,
        )?;
        bounded(
            "num_attention_heads",
            self.num_attention_heads,
            1,
            limits::HEADS,
        )?;
        bounded("layer_width", self.layer_width, 1, limits::WIDTH)?;
        bounded(
            "feedforward_hidden_size",
            self.feedforward_hidden_size,
            1,
            limits::FEEDFORWARD,
        )?;
        bounded("key_value_size", self.key_value_size, 1, limits::KEY_VALUE)?;
        in_range("dropout_rate", self.dropout_rate, 0.0, 1.0, false)?;
        positive("layer_norm_eps", self.layer_norm_eps)?;
        bounded(
            "token_sequence_length",
            self.token_sequence_length,
            2,
            limits::CONTEXT,
        )?;

        positive("mu_law_mu", self.mu_law_mu)?;
        positive("mu_law_m", self.mu_law_m)?;
        // Token ranges: checked (with overlap rules) by TokenLayout.
        TokenLayout::from_config(self)?;

        bounded("img_patch_size", self.img_patch_size, 1, limits::PATCH)?;
        if !(1..=4).contains(&self.image_channels) {
            return Err(Error::config(
                "image_channels",
                self.image_channels,
                "must lie in [1, 4] (1 grayscale, 3 RGB, 4 frame stack or RGBA)",
            ));
        }
        bounded(
            "patch_embedding_channels",
            self.patch_embedding_channels,
            1,
            limits::PATCH_CHANNELS,
        )?;
        bounded(
            "num_group_norm_groups",
            self.num_group_norm_groups,
            1,
            limits::PATCH_CHANNELS,
        )?;
        bounded("num_res_blocks", self.num_res_blocks, 0, limits::RES_BLOCKS)?;
        if !self
            .patch_embedding_channels
            .is_multiple_of(self.num_group_norm_groups)
        {
            return Err(Error::config(
                "num_group_norm_groups",
                self.num_group_norm_groups,
                format!(
                    "must divide patch_embedding_channels = {}",
                    self.patch_embedding_channels
                ),
            ));
        }
        bounded(
            "position_buckets",
            self.position_buckets,
            1,
            limits::POSITION_BUCKETS,
        )?;
        bounded(
            "local_position_encoding_size",
            self.local_position_encoding_size,
            1,
            limits::LOCAL_POSITIONS,
        )?;

        let t = &self.training;
        positive("training.learning_rate", t.learning_rate)?;
        positive("training.initial_learning_rate", t.initial_learning_rate)?;
        if !(t.cosine_decay_factor.is_finite() && t.cosine_decay_factor >= 1.0) {
            return Err(Error::config(
                "training.cosine_decay_factor",
                t.cosine_decay_factor,
                "must be finite and at least 1",
            ));
        }
        in_range("training.adam_beta1", t.adam_beta1, 0.0, 1.0, false)?;
        in_range("training.adam_beta2", t.adam_beta2, 0.0, 1.0, false)?;
        positive("training.adam_epsilon", t.adam_epsilon)?;
        in_range(
            "training.weight_decay",
            t.weight_decay,
            0.0,
            f64::MAX,
            false,
        )?;
        bounded("training.batch_size", t.batch_size, 1, limits::BATCH)?;
        in_range(
            "training.gradient_clip_norm",
            t.gradient_clip_norm,
            0.0,
            f64::MAX,
            false,
        )?;
        in_range(
            "training.prompt_probability",
            t.prompt_probability,
            0.0,
            1.0,
            true,
        )?;
        Ok(())
    }
}

impl Default for GatoConfig {
    /// The `small` preset, the size most of the paper's ablations use.
    fn default() -> Self {
        Self::small()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_match_table_6() {
        for name in PRESET_NAMES {
            GatoConfig::preset(name).unwrap().validate().unwrap();
        }
        let s = GatoConfig::small();
        assert_eq!(
            (
                s.num_transformer_blocks,
                s.num_attention_heads,
                s.layer_width,
                s.feedforward_hidden_size,
                s.key_value_size
            ),
            (8, 24, 768, 3072, 32)
        );
        let b = GatoConfig::baseline();
        assert_eq!(
            (
                b.num_transformer_blocks,
                b.num_attention_heads,
                b.layer_width
            ),
            (12, 12, 1536)
        );
        let l = GatoConfig::large();
        assert_eq!(
            (
                l.num_transformer_blocks,
                l.num_attention_heads,
                l.layer_width
            ),
            (24, 16, 2048)
        );
    }

    #[test]
    fn json_round_trip() {
        let c = GatoConfig::baseline();
        assert_eq!(GatoConfig::from_json(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn zero_heads_names_the_field() {
        let mut c = GatoConfig::tiny();
        c.num_attention_heads = 0;
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            msg.contains("num_attention_heads")
                && msg.contains("= 0")
                && msg.contains("must lie in [1, 1024]"),
            "{msg}"
        );
    }

    #[test]
    fn groups_must_divide_channels() {
        let mut c = GatoConfig::small();
        c.num_group_norm_groups = 24;
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            msg.contains("num_group_norm_groups") && msg.contains("24") && msg.contains("divide"),
            "{msg}"
        );
    }

    #[test]
    fn nan_dropout_is_rejected() {
        let mut c = GatoConfig::small();
        c.dropout_rate = f64::NAN;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("dropout_rate"));
    }

    #[test]
    fn unknown_field_in_json_is_named() {
        let mut v: serde_json::Value = serde_json::from_str(&GatoConfig::tiny().to_json()).unwrap();
        v["num_heads"] = 3.into();
        let msg = GatoConfig::from_json(&v.to_string())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("num_heads"), "{msg}");
    }

    #[test]
    fn missing_field_in_json_is_named() {
        let mut v: serde_json::Value = serde_json::from_str(&GatoConfig::tiny().to_json()).unwrap();
        v.as_object_mut().unwrap().remove("layer_width");
        let msg = GatoConfig::from_json(&v.to_string())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("layer_width"), "{msg}");
    }

    #[test]
    fn unknown_preset_lists_presets() {
        let msg = GatoConfig::from_name_or_path("medium")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("medium") && msg.contains("tiny, nano, small, baseline, large"),
            "{msg}"
        );
    }
}
