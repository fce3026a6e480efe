//! The episode file format, version 1 (see `docs/episode-format.md`): the metadata types and their validation.
//!
//! A file is a safetensors file. Its `__metadata__` holds `format = "gato-episodes"`, `version = "1"`, `env_id`,
//! `fields` (a JSON list of [`FieldMeta`]) and `episodes` (a JSON list of [`EpisodeMeta`]); other keys are kept as
//! free-form extras. Episode `i` stores each field as `episode_{i}.{name}` with a leading time axis, text as
//! `episode_{i}.{name}.bytes` (UTF-8) plus `episode_{i}.{name}.offsets` (`T + 1` int64), and the rewards as
//! `episode_{i}.rewards` (`[T]` float32). Field names follow the JAT dataset where they fit: `text_observations`,
//! `image_observations`, `discrete_observations`, `continuous_observations`, `discrete_actions`,
//! `continuous_actions`.

use serde::{Deserialize, Serialize};

/// The value of `__metadata__["format"]`.
pub const FORMAT_NAME: &str = "gato-episodes";
/// The version this reader understands.
pub const FORMAT_VERSION: u32 = 1;

/// Whether a field is observed or acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Part of the observation.
    Observation,
    /// Part of the action.
    Action,
}

/// The modality of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldModality {
    /// UTF-8 text per timestep.
    Text,
    /// `[H, W, C]` uint8 image per timestep.
    Image,
    /// int64 values in `[0, num_values)`.
    Discrete,
    /// float32 values.
    Continuous,
}

/// One field as the file describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMeta {
    /// Name, e.g. `continuous_observations`.
    pub name: String,
    /// Observation or action.
    pub role: Role,
    /// Modality.
    pub modality: FieldModality,
    /// Per-timestep shape (`[]` scalar, `[H, W, C]` image, `[]` for text).
    pub shape: Vec<usize>,
    /// `text`, `uint8`, `int64` or `float32`, matching the modality.
    pub dtype: String,
    /// Discrete: number of legal values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_values: Option<u32>,
    /// Continuous: whether mu-law applies before binning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mu_law: Option<bool>,
    /// Continuous: bounds of the space, if bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<(f32, f32)>,
}

impl FieldMeta {
    /// Values per timestep (1 for a scalar; bytes vary for text).
    pub fn values_per_step(&self) -> usize {
        self.shape.iter().product()
    }

    /// The dtype the modality requires.
    pub fn expected_dtype(&self) -> &'static str {
        match self.modality {
            FieldModality::Text => "text",
            FieldModality::Image => "uint8",
            FieldModality::Discrete => "int64",
            FieldModality::Continuous => "float32",
        }
    }

    /// Check the description itself (not the data); `Err(detail)`.
    pub fn validate(&self) -> Result<(), String> {
        let ok_name = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && self.name != "rewards";
        if !ok_name {
            return Err(format!(
                "field name {:?} must be non-empty [A-Za-z0-9_-] and not `rewards`",
                self.name
            ));
        }
        if self.dtype != self.expected_dtype() {
            return Err(format!(
                "dtype {:?}, a {:?} field stores {}",
                self.dtype,
                self.modality,
                self.expected_dtype()
            ));
        }
        match self.modality {
            FieldModality::Text if !self.shape.is_empty() => {
                return Err("text fields have shape []".into())
            }
            FieldModality::Image
                if !(self.shape.len() == 3
                    && matches!(self.shape[2], 1 | 3 | 4)
                    && self.shape[0] > 0
                    && self.shape[1] > 0) =>
            {
                return Err(format!(
                    "image shape {:?} must be [H, W, C] with C in 1, 3, 4",
                    self.shape
                ))
            }
            FieldModality::Discrete if !matches!(self.num_values, Some(n) if n >= 1) => {
                return Err("discrete fields need num_values ≥ 1".into())
            }
            FieldModality::Continuous => {
                if let Some((lo, hi)) = self.bounds {
                    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                        return Err(format!(
                            "bounds ({lo}, {hi}) must be finite with low ≤ high"
                        ));
                    }
                }
            }
            _ => {}
        }
        if self.role == Role::Action
            && !matches!(
                self.modality,
                FieldModality::Discrete | FieldModality::Continuous
            )
        {
            return Err(format!(
                "action fields are discrete or continuous, not {:?}",
                self.modality
            ));
        }
        if self.shape.contains(&0) {
            return Err(format!("shape {:?} has a zero dimension", self.shape));
        }
        Ok(())
    }
}

/// One episode as the metadata lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeMeta {
    /// Timesteps.
    pub length: usize,
    /// Sum of rewards.
    #[serde(rename = "return")]
    pub episode_return: f64,
}
