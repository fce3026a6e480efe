//! The default prompt (`docs/design.md` §7): the first whole timesteps of a demonstration.

use gato_tokenizers::{TokenSequence, Window};

/// The first whole timesteps of `demo` that fit in `budget` tokens, marked as prompt tokens (never loss targets).
/// Empty when not even the first timestep fits.
pub fn prompt_from(demo: &TokenSequence, budget: usize) -> TokenSequence {
    let mut end_ts = 0;
    while end_ts < demo.timestep_starts.len() && demo.timestep_range(end_ts).end <= budget {
        end_ts += 1;
    }
    if end_ts == 0 {
        return TokenSequence::default();
    }
    let w = Window {
        start: 0,
        end: demo.timestep_range(end_ts - 1).end,
        first_timestep: 0,
        timesteps: end_ts,
    };
    let mut p = demo.slice(&w);
    for tok in &mut p.tokens {
        tok.prompt = true;
        tok.loss = false;
    }
    p
}
