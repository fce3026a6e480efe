//! Patch position buckets (App. C.3, `docs/design.md` §5): a patch's normalised row or column interval quantised
//! into `position_buckets` (128) buckets, in integer arithmetic.

/// Quantise interval `index` of `count` equal intervals of [0, 1) into `buckets` buckets (`docs/design.md` §5, App. C.3):
/// `lo = buckets·index / count`, `hi = max(lo + 1, min(buckets, buckets·(index+1) / count))`, integer division,
/// so no float rounding moves a boundary. Evaluation uses `(lo + hi) / 2`; training draws uniformly from `[lo, hi)`.
pub fn bucket_range(index: u32, count: u32, buckets: u32) -> (u32, u32) {
    let count = u64::from(count.max(1));
    let b = u64::from(buckets);
    let lo = (b * u64::from(index) / count).min(b.saturating_sub(1));
    let hi = (b * (u64::from(index) + 1) / count).min(b).max(lo + 1);
    (lo as u32, hi as u32)
}

/// The evaluation-mode bucket of interval `index` of `count`: the mean of its bucket range, rounded down.
pub fn eval_bucket(index: u32, count: u32, buckets: u32) -> u32 {
    let (lo, hi) = bucket_range(index, count, buckets);
    (lo + hi) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of `docs/design.md` §5.
    #[test]
    fn spec_bucket_examples() {
        let rows: Vec<u32> = (0..4).map(|r| eval_bucket(r, 4, 128)).collect();
        assert_eq!(rows, [16, 48, 80, 112]);
        let cols: Vec<u32> = (0..5).map(|c| eval_bucket(c, 5, 128)).collect();
        assert_eq!(cols, [12, 38, 63, 89, 115]);
        let fourteen: Vec<u32> = (0..3).map(|c| eval_bucket(c, 14, 128)).collect();
        assert_eq!(fourteen, [4, 13, 22]);
    }

    #[test]
    fn buckets_are_non_empty_and_in_range_even_with_more_patches_than_buckets() {
        for count in 1..300 {
            for i in 0..count {
                let (lo, hi) = bucket_range(i, count, 128);
                assert!(lo < hi && hi <= 128, "{i}/{count}: [{lo}, {hi})");
            }
        }
    }
}
