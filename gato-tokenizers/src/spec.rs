//! Describing an environment's fields and one timestep's values (design.md §4): what the sequence builder consumes.

use std::collections::BTreeMap;

use gato_core::Modality;
use serde::{Deserialize, Serialize};

use crate::patches::{ImageRef, Pixels};

/// What a field holds and how it is tokenized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "modality")]
pub enum FieldKind {
    /// Text, tokenized by a registered tokenizer (name or model path).
    Text {
        /// Tokenizer name or model file.
        tokenizer: String,
    },
    /// An HWC image with this many channels.
    Image {
        /// Channels (1, 3 or 4).
        channels: usize,
    },
    /// Integers in `[0, num_values)`.
    Discrete {
        /// Number of legal values (≤ the layout's discrete range).
        num_values: u32,
    },
    /// Real values.
    Continuous {
        /// Whether mu-law companding applies before binning (design.md §3).
        mu_law: bool,
        /// Optional bounds decoded actions are clamped into.
        bounds: Option<(f32, f32)>,
    },
}

impl FieldKind {
    pub(crate) fn modality(&self) -> Modality {
        match self {
            FieldKind::Text { .. } => Modality::Text,
            FieldKind::Image { .. } => Modality::Image,
            FieldKind::Discrete { .. } => Modality::Discrete,
            FieldKind::Continuous { .. } => Modality::Continuous,
        }
    }

    /// Canonical group: text, images, then tensors (discrete and continuous together).
    pub(crate) fn group(&self) -> u8 {
        match self {
            FieldKind::Text { .. } => 0,
            FieldKind::Image { .. } => 1,
            FieldKind::Discrete { .. } | FieldKind::Continuous { .. } => 2,
        }
    }
}

/// One named field of an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldSpec {
    /// Key, e.g. `mission`, `image`, `joint_pos`.
    pub key: String,
    /// Modality and tokenization.
    pub kind: FieldKind,
    /// Tensor shape (discrete/continuous: flattened row-major; `[]` is a scalar); `[H, W, C]` for images; ignored
    /// for text.
    pub shape: Vec<usize>,
}

impl FieldSpec {
    /// Number of values (tokens, for discrete and continuous fields).
    pub fn num_values(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The observation and action fields of an environment.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EnvSpec {
    /// Observation fields (any order; the builder sorts them canonically).
    pub observations: Vec<FieldSpec>,
    /// Action fields (discrete or continuous).
    pub actions: Vec<FieldSpec>,
}

/// Owned HWC pixels.
#[derive(Debug, Clone, PartialEq)]
pub enum ImagePixels {
    /// 0–255.
    U8(Vec<u8>),
    /// [0, 1].
    F32(Vec<f32>),
}

/// An owned HWC image.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Channels.
    pub channels: usize,
    /// Pixels.
    pub pixels: ImagePixels,
}

impl Image {
    /// Borrow as an [`ImageRef`].
    pub fn as_ref(&self) -> ImageRef<'_> {
        ImageRef {
            pixels: match &self.pixels {
                ImagePixels::U8(p) => Pixels::U8(p),
                ImagePixels::F32(p) => Pixels::F32(p),
            },
            height: self.height,
            width: self.width,
            channels: self.channels,
        }
    }
}

/// The value of one field at one timestep.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// Text.
    Text(String),
    /// An image.
    Image(Image),
    /// Discrete values, flattened row-major.
    Discrete(Vec<i64>),
    /// Continuous values, flattened row-major.
    Continuous(Vec<f32>),
}

impl FieldValue {
    pub(crate) fn modality(&self) -> Modality {
        match self {
            FieldValue::Text(_) => Modality::Text,
            FieldValue::Image(_) => Modality::Image,
            FieldValue::Discrete(_) => Modality::Discrete,
            FieldValue::Continuous(_) => Modality::Continuous,
        }
    }
}

/// One timestep: observation and action values by key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Timestep {
    /// Observation values.
    pub observations: BTreeMap<String, FieldValue>,
    /// Action values (empty for the current step when acting).
    pub actions: BTreeMap<String, FieldValue>,
}
