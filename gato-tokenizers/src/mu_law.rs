//! Continuous values: mu-law companding, clipping, uniform bins (paper §2.1, App. B; design.md §3).
//!
//! `F(x) = sgn(x)·ln(|x|·μ + 1) / ln(M·μ + 1)` with μ = 100, M = 256; clip F to [−1, 1]; bin
//! `b = floor((F + 1)/2 · bins)` with `bins` mapped to `bins − 1`; token = `b + continuous.start` (32000).
//! Decoding takes the bin centre `v = (2b + 1)/bins − 1` and inverts mu-law: `sgn(v)·((M·μ + 1)^|v| − 1)/μ`.
//! A field may turn mu-law off (values already in [−1, 1], e.g. MuJoCo actions): it is then only clipped and
//! binned. Arithmetic is f64 so the golden table of design.md §3 holds exactly.

use gato_core::{GatoConfig, TokenLayout};

use crate::error::{Error, Result};

/// Tokenizes continuous values into the continuous block of the token space.
#[derive(Debug, Clone, PartialEq)]
pub struct ContinuousValueTokenizer {
    mu: f64,
    /// `ln(M·μ + 1)`.
    log_norm: f64,
    /// `M·μ + 1`.
    base: f64,
    bins: u32,
    first_token: u32,
}

impl ContinuousValueTokenizer {
    /// From a validated config (μ, M, bins and the continuous block of its layout).
    pub fn new(config: &GatoConfig) -> Result<Self> {
        let layout = config.layout()?;
        Ok(Self::from_layout(
            &layout,
            config.mu_law_mu,
            config.mu_law_m,
        ))
    }

    /// From a layout and the mu-law constants (both positive and finite; see `GatoConfig::validate`).
    pub fn from_layout(layout: &TokenLayout, mu: f64, m: f64) -> Self {
        let base = m * mu + 1.0;
        ContinuousValueTokenizer {
            mu,
            log_norm: base.ln(),
            base,
            bins: layout.continuous.end - layout.continuous.start,
            first_token: layout.continuous.start,
        }
    }

    /// Number of bins.
    pub fn bins(&self) -> u32 {
        self.bins
    }

    /// The token range `[first, first + bins)`.
    pub fn token_range(&self) -> std::ops::Range<u32> {
        self.first_token..self.first_token + self.bins
    }

    /// `F(x)`, not clipped.
    #[inline]
    pub fn mu_law(&self, x: f64) -> f64 {
        x.signum() * (x.abs() * self.mu).ln_1p() / self.log_norm
    }

    /// Inverse of [`mu_law`](Self::mu_law) on [−1, 1].
    #[inline]
    pub fn inverse_mu_law(&self, v: f64) -> f64 {
        v.signum() * (self.base.powf(v.abs()) - 1.0) / self.mu
    }

    /// Bin of a companded (or raw, when mu-law is off) value; clips to [−1, 1]. `v` must not be NaN.
    #[inline]
    pub fn bin(&self, v: f64) -> u32 {
        let c = v.clamp(-1.0, 1.0);
        let b = ((c + 1.0) / 2.0 * self.bins as f64).floor() as u32;
        b.min(self.bins - 1)
    }

    /// Centre of bin `b` in companded space, `(2b + 1)/bins − 1`.
    #[inline]
    pub fn bin_center(&self, b: u32) -> f64 {
        (2.0 * b as f64 + 1.0) / self.bins as f64 - 1.0
    }

    /// Token of one finite value, or `None` for NaN/±Inf.
    #[inline]
    pub fn encode_value(&self, x: f32, mu_law: bool) -> Option<u32> {
        if !x.is_finite() {
            return None;
        }
        let x = x as f64;
        let v = if mu_law { self.mu_law(x) } else { x };
        Some(self.first_token + self.bin(v))
    }

    /// Append the tokens of `values` to `out` (no allocation per value). A NaN/±Inf is an error naming `field` and
    /// its index; `out` is left as it was on error.
    pub fn encode_into(
        &self,
        field: &str,
        values: &[f32],
        mu_law: bool,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        let start = out.len();
        out.reserve(values.len());
        for (i, &x) in values.iter().enumerate() {
            match self.encode_value(x, mu_law) {
                Some(t) => out.push(t),
                None => {
                    out.truncate(start);
                    return Err(Error::NonFinite {
                        field: field.to_string(),
                        index: i,
                        value: x as f64,
                    });
                }
            }
        }
        Ok(())
    }

    /// Tokens of `values`.
    pub fn encode(&self, field: &str, values: &[f32], mu_law: bool) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(values.len());
        self.encode_into(field, values, mu_law, &mut out)?;
        Ok(out)
    }

    /// Value of one token (bin centre, inverse mu-law), or `None` outside the continuous block.
    #[inline]
    pub fn decode_token(&self, token: u32, mu_law: bool) -> Option<f32> {
        let b = token
            .checked_sub(self.first_token)
            .filter(|&b| b < self.bins)?;
        let v = self.bin_center(b);
        Some(if mu_law { self.inverse_mu_law(v) } else { v } as f32)
    }

    /// Values of `tokens`; a token outside the continuous block is an error naming `field` and its index.
    pub fn decode(&self, field: &str, tokens: &[u32], mu_law: bool) -> Result<Vec<f32>> {
        tokens
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                self.decode_token(t, mu_law)
                    .ok_or_else(|| Error::OutOfRange {
                        field: field.to_string(),
                        what: "token",
                        index: i,
                        value: t.to_string(),
                        allowed: format!(
                            "[{}, {})",
                            self.first_token,
                            self.first_token + self.bins
                        ),
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tok() -> ContinuousValueTokenizer {
        ContinuousValueTokenizer::new(&GatoConfig::small()).unwrap()
    }

    /// design.md §3 golden table, exactly.
    #[test]
    fn golden_table() {
        let t = tok();
        let table: [(f32, u32); 13] = [
            (-256.0, 32000),
            (-10.0, 32163),
            (-1.0, 32279),
            (-0.1, 32391),
            (0.0, 32512),
            (0.01, 32546),
            (0.1, 32632),
            (0.5, 32710),
            (1.0, 32744),
            (10.0, 32860),
            (100.0, 32976),
            (256.0, 33023),
            (1e30, 33023),
        ];
        for (x, want) in table {
            assert_eq!(t.encode_value(x, true), Some(want), "x = {x}");
        }
        assert_eq!(t.encode_value(-1e30, true), Some(32000));
    }

    #[test]
    fn non_finite_is_an_error_naming_field_and_index() {
        let t = tok();
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut out = vec![7];
            let e = t
                .encode_into("joint_pos", &[0.0, 1.0, bad], true, &mut out)
                .unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains("joint_pos") && msg.contains("index 2"),
                "{msg}"
            );
            assert_eq!(out, vec![7], "output must be left untouched on error");
        }
    }

    #[test]
    fn without_mu_law_values_are_clipped_and_binned() {
        let t = tok();
        assert_eq!(t.encode_value(-1.0, false), Some(32000));
        assert_eq!(t.encode_value(-5.0, false), Some(32000));
        assert_eq!(t.encode_value(0.0, false), Some(32512));
        assert_eq!(t.encode_value(1.0, false), Some(33023));
        assert_eq!(t.encode_value(0.999, false), Some(32000 + 1023));
    }

    #[test]
    fn decode_rejects_tokens_outside_the_block() {
        let msg = tok()
            .decode("a", &[32000, 31999], true)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("index 1") && msg.contains("31999") && msg.contains("[32000, 33024)"),
            "{msg}"
        );
        assert!(tok().decode("a", &[33024], true).is_err());
    }

    proptest! {
        /// decode(encode(x)) lies in x's bin: within half a bin width of F(x) in mu-law space (after clipping).
        #[test]
        fn round_trip_within_bin(x in prop::num::f32::NORMAL | prop::num::f32::SUBNORMAL | prop::num::f32::ZERO, mu in any::<bool>()) {
            let t = tok();
            let token = t.encode_value(x, mu).unwrap();
            let y = t.decode_token(token, mu).unwrap();
            let fx = if mu { t.mu_law(x as f64) } else { x as f64 }.clamp(-1.0, 1.0);
            let fy = if mu { t.mu_law(y as f64) } else { y as f64 };
            let half = 1.0 / t.bins() as f64;
            prop_assert!((fx - fy).abs() <= half + 1e-6, "x={x} F(x)={fx} y={y} F(y)={fy}");
        }

        #[test]
        fn monotone(a in -1e6f32..1e6, b in -1e6f32..1e6, mu in any::<bool>()) {
            let t = tok();
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(t.encode_value(lo, mu).unwrap() <= t.encode_value(hi, mu).unwrap());
        }

        #[test]
        fn tokens_land_in_the_continuous_block(xs in prop::collection::vec(any::<f32>(), 0..64), mu in any::<bool>()) {
            let t = tok();
            match t.encode("f", &xs, mu) {
                Ok(tokens) => prop_assert!(tokens.iter().all(|tk| (32000..33024).contains(tk))),
                Err(_) => prop_assert!(xs.iter().any(|x| !x.is_finite())),
            }
        }

        #[test]
        fn decode_never_panics(tokens in prop::collection::vec(any::<u32>(), 0..64)) {
            let _ = tok().decode("f", &tokens, true);
        }
    }
}
