//! The learning rate at a step (App. D, `docs/design.md` §8): linear warm-up from `initial_learning_rate` to
//! `learning_rate` over `warmup_steps`, then a cosine decay that divides it by `cosine_decay_factor` at
//! `total_steps`.

use gato_core::TrainingConfig;

/// The learning rate of step `step` (0-based) of a run of `total_steps`.
pub fn learning_rate(t: &TrainingConfig, step: usize, total_steps: usize) -> f64 {
    if step < t.warmup_steps {
        let f = step as f64 / t.warmup_steps as f64;
        return t.initial_learning_rate + f * (t.learning_rate - t.initial_learning_rate);
    }
    let span = total_steps.saturating_sub(t.warmup_steps).max(1) as f64;
    let progress = ((step - t.warmup_steps) as f64 / span).min(1.0);
    let min = t.learning_rate / t.cosine_decay_factor;
    min + 0.5 * (t.learning_rate - min) * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_then_cosine_down_to_a_tenth() {
        let t = TrainingConfig {
            warmup_steps: 10,
            ..Default::default()
        };
        assert_eq!(learning_rate(&t, 0, 110), 1e-7);
        assert!((learning_rate(&t, 5, 110) - (1e-7 + 0.5 * (1e-4 - 1e-7))).abs() < 1e-15);
        assert!((learning_rate(&t, 10, 110) - 1e-4).abs() < 1e-15);
        assert!((learning_rate(&t, 60, 110) - 0.55e-4).abs() < 1e-12);
        assert!((learning_rate(&t, 110, 110) - 1e-5).abs() < 1e-15);
        assert!((learning_rate(&t, 500, 110) - 1e-5).abs() < 1e-15);
    }
}
