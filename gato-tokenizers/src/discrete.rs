//! Discrete values: integers in `[0, discrete_values_size)` after row-major flattening, token = value +
//! `discrete_offset` (paper §2.1; design.md §3).

use gato_core::{GatoConfig, TokenLayout};

use crate::error::{Error, Result};

/// Tokenizes discrete values (and, for action fields, a per-field number of legal values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscreteValueTokenizer {
    offset: u32,
    size: u32,
}

impl DiscreteValueTokenizer {
    /// From a validated config.
    pub fn new(config: &GatoConfig) -> Result<Self> {
        Ok(Self::from_layout(&config.layout()?))
    }

    /// From a layout.
    pub fn from_layout(layout: &TokenLayout) -> Self {
        DiscreteValueTokenizer {
            offset: layout.discrete.start,
            size: layout.discrete.end - layout.discrete.start,
        }
    }

    /// Number of representable values.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Tokens of values `[0, n)`, for a field with `n` legal values (`n ≤ size`).
    pub fn token_range(&self, n: u32) -> std::ops::Range<u32> {
        self.offset..self.offset + n.min(self.size)
    }

    fn check(&self, field: &str, i: usize, v: i64, n: u32) -> Result<u32> {
        if v < 0 || v >= i64::from(n) {
            return Err(Error::OutOfRange {
                field: field.to_string(),
                what: "value",
                index: i,
                value: v.to_string(),
                allowed: format!("[0, {n})"),
            });
        }
        Ok(v as u32 + self.offset)
    }

    /// Append the tokens of `values` (each in `[0, size)`) to `out`; `out` is unchanged on error.
    pub fn encode_into(&self, field: &str, values: &[i64], out: &mut Vec<u32>) -> Result<()> {
        self.encode_bounded_into(field, values, self.size, out)
    }

    /// As [`encode_into`](Self::encode_into) with a field-specific bound `n ≤ size` (e.g. 4 legal actions).
    pub fn encode_bounded_into(
        &self,
        field: &str,
        values: &[i64],
        n: u32,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        let n = n.min(self.size);
        let start = out.len();
        out.reserve(values.len());
        for (i, &v) in values.iter().enumerate() {
            match self.check(field, i, v, n) {
                Ok(t) => out.push(t),
                Err(e) => {
                    out.truncate(start);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Tokens of `values`.
    pub fn encode(&self, field: &str, values: &[i64]) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(values.len());
        self.encode_into(field, values, &mut out)?;
        Ok(out)
    }

    /// Values of `tokens`, each required to lie in `[offset, offset + n)`.
    pub fn decode(&self, field: &str, tokens: &[u32], n: u32) -> Result<Vec<i64>> {
        let range = self.token_range(n);
        tokens
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                if range.contains(&t) {
                    Ok(i64::from(t - self.offset))
                } else {
                    Err(Error::OutOfRange {
                        field: field.to_string(),
                        what: "token",
                        index: i,
                        value: t.to_string(),
                        allowed: format!("[{}, {})", range.start, range.end),
                    })
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paper_offset_and_shared_block() {
        let t = DiscreteValueTokenizer::new(&GatoConfig::small()).unwrap();
        assert_eq!(t.encode("a", &[0, 3, 1023]).unwrap(), vec![0, 3, 1023]);
        let mut c = GatoConfig::small();
        c.discrete_offset = 32000;
        let t = DiscreteValueTokenizer::new(&c).unwrap();
        assert_eq!(t.encode("a", &[0, 3]).unwrap(), vec![32000, 32003]);
    }

    #[test]
    fn out_of_range_names_field_index_value_and_range() {
        let t = DiscreteValueTokenizer::new(&GatoConfig::small()).unwrap();
        let msg = t.encode("grid", &[1, 1024]).unwrap_err().to_string();
        assert!(
            msg.contains("grid")
                && msg.contains("index 1")
                && msg.contains("1024")
                && msg.contains("[0, 1024)"),
            "{msg}"
        );
        assert!(t.encode("grid", &[-1]).is_err());
        let mut out = vec![];
        assert!(t.encode_bounded_into("action", &[4], 4, &mut out).is_err());
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn round_trip(values in prop::collection::vec(0i64..1024, 0..100)) {
            let t = DiscreteValueTokenizer::new(&GatoConfig::small()).unwrap();
            let tokens = t.encode("f", &values).unwrap();
            prop_assert_eq!(t.decode("f", &tokens, 1024).unwrap(), values);
        }

        #[test]
        fn any_input_is_ok_or_err(values in prop::collection::vec(any::<i64>(), 0..32), tokens in prop::collection::vec(any::<u32>(), 0..32)) {
            let t = DiscreteValueTokenizer::new(&GatoConfig::small()).unwrap();
            let ok = values.iter().all(|v| (0..1024).contains(v));
            prop_assert_eq!(t.encode("f", &values).is_ok(), ok);
            let _ = t.decode("f", &tokens, 7);
        }
    }
}
