//! `TokenLayout`: the token space of design.md §2 (paper §2.1), computed in one place.
//!
//! | range (default)    | meaning                                                     |
//! |--------------------|-------------------------------------------------------------|
//! | `[0, 32000)`       | text                                                        |
//! | `[0, 1024)`        | discrete values (`discrete_offset` = 0: share text rows)    |
//! | `[32000, 33024)`   | continuous values after mu-law and binning                  |
//! | `33024`            | the separator `|`                                           |
//! | vocabulary = 33025 |                                                             |
//!
//! Rules: the continuous block follows the text block; the separator lies in no other range; the discrete range
//! either lies inside the text block (the paper's reading) or inside the continuous block (the shared-bins option);
//! any other overlap is a configuration error.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::config::GatoConfig;
use crate::error::{Error, Result};

/// The ranges of token ids of each modality and the vocabulary size (design.md §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenLayout {
    /// Text ids: `[0, text_vocabulary_size)`.
    pub text: Range<u32>,
    /// Discrete-value ids: `[discrete_offset, discrete_offset + discrete_values_size)`.
    pub discrete: Range<u32>,
    /// Continuous-bin ids: `[text_vocabulary_size, text_vocabulary_size + continuous_values_size)`.
    pub continuous: Range<u32>,
    /// The separator `|` between observation and action tokens.
    pub separator: u32,
    /// Number of rows of the shared embedding table and of the output logits.
    pub vocab_size: u32,
}

fn fmt_range(r: &Range<u32>) -> String {
    format!("[{}, {})", r.start, r.end)
}

fn contains_range(outer: &Range<u32>, inner: &Range<u32>) -> bool {
    inner.start >= outer.start && inner.end <= outer.end
}

fn overlaps(a: &Range<u32>, b: &Range<u32>) -> bool {
    a.start < b.end && b.start < a.end
}

impl TokenLayout {
    /// Compute and validate the layout of a config.
    pub fn from_config(c: &GatoConfig) -> Result<Self> {
        let max = crate::config::limits::VOCABULARY;
        let to_u32 = |field: &str, v: usize| -> Result<u32> {
            // Every id below the vocabulary bound, so the sums below cannot overflow u32.
            if v >= max {
                return Err(Error::config(
                    field,
                    v,
                    format!("must be below {max} (the vocabulary bound)"),
                ));
            }
            Ok(v as u32)
        };
        let text_n = to_u32("text_vocabulary_size", c.text_vocabulary_size)?;
        let disc_n = to_u32("discrete_values_size", c.discrete_values_size)?;
        let disc_off = to_u32("discrete_offset", c.discrete_offset)?;
        let cont_n = to_u32("continuous_values_size", c.continuous_values_size)?;
        if text_n < 1 {
            return Err(Error::config(
                "text_vocabulary_size",
                text_n,
                "must be at least 1",
            ));
        }
        if disc_n < 1 {
            return Err(Error::config(
                "discrete_values_size",
                disc_n,
                "must be at least 1",
            ));
        }
        if cont_n < 2 {
            return Err(Error::config(
                "continuous_values_size",
                cont_n,
                "must be at least 2",
            ));
        }
        let text = 0..text_n;
        let continuous = text_n..text_n + cont_n;
        let discrete = disc_off..disc_off + disc_n;
        if !(contains_range(&text, &discrete) || contains_range(&continuous, &discrete)) {
            return Err(Error::config(
                "discrete_offset",
                disc_off,
                format!(
                    "discrete range {} must lie inside the text range {} or the continuous range {}",
                    fmt_range(&discrete),
                    fmt_range(&text),
                    fmt_range(&continuous)
                ),
            ));
        }
        let separator = match c.separator_token {
            None => continuous.end,
            Some(s) => to_u32("separator_token", s)?,
        };
        for (name, r) in [
            ("text", &text),
            ("discrete", &discrete),
            ("continuous", &continuous),
        ] {
            if r.contains(&separator) {
                return Err(Error::config(
                    "separator_token",
                    separator,
                    format!("must not lie in the {name} range {}", fmt_range(r)),
                ));
            }
        }
        debug_assert!(!overlaps(&text, &continuous));
        let vocab_size = continuous.end.max(discrete.end).max(separator + 1);
        if vocab_size as usize > max {
            return Err(Error::config(
                "continuous_values_size",
                cont_n,
                format!("the vocabulary would hold {vocab_size} ids, at most {max} are allowed"),
            ));
        }
        Ok(TokenLayout {
            text,
            discrete,
            continuous,
            separator,
            vocab_size,
        })
    }

    /// Human-readable one-line-per-range summary, used by `gato info`.
    pub fn describe(&self) -> Vec<(String, String)> {
        vec![
            ("text".into(), fmt_range(&self.text)),
            ("discrete".into(), fmt_range(&self.discrete)),
            ("continuous".into(), fmt_range(&self.continuous)),
            ("separator".into(), self.separator.to_string()),
            ("vocabulary".into(), self.vocab_size.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_layout() {
        let l = GatoConfig::small().layout().unwrap();
        assert_eq!(l.text, 0..32000);
        assert_eq!(l.discrete, 0..1024);
        assert_eq!(l.continuous, 32000..33024);
        assert_eq!(l.separator, 33024);
        assert_eq!(l.vocab_size, 33025);
    }

    #[test]
    fn shared_continuous_block_is_allowed() {
        let mut c = GatoConfig::small();
        c.discrete_offset = 32000;
        let l = c.layout().unwrap();
        assert_eq!(l.discrete, 32000..33024);
        assert_eq!(l.vocab_size, 33025);
    }

    #[test]
    fn straddling_discrete_range_is_an_error() {
        let mut c = GatoConfig::small();
        c.discrete_offset = 31500;
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            msg.contains("discrete_offset")
                && msg.contains("31500")
                && msg.contains("[31500, 32524)"),
            "{msg}"
        );
    }

    #[test]
    fn separator_inside_continuous_is_an_error() {
        let mut c = GatoConfig::small();
        c.separator_token = Some(32100);
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            msg.contains("separator_token") && msg.contains("continuous"),
            "{msg}"
        );
    }

    #[test]
    fn explicit_separator_beyond_blocks_grows_vocab() {
        let mut c = GatoConfig::small();
        c.separator_token = Some(40000);
        assert_eq!(c.layout().unwrap().vocab_size, 40001);
    }
}
