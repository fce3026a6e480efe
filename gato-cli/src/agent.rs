//! Acting offline on recorded episodes (paper §2.4; SPEC §7): the composition of the sequence builder (tokens in,
//! action tokens back to values) and the model (KV cache, sampling restricted to legal ids).
//!
//! At every timestep the agent sees the observation and the separator, samples the action one token at a time —
//! each restricted to the legal ids of its field — and decodes it. It then replaces its own action with the
//! recorded one in the context (teacher forcing), so the next step conditions on the real trajectory, and the
//! agreement with the expert is measured step by step.

use std::collections::BTreeMap;
use std::time::Instant;

use gato_core::{run_scoped, ActionLocalPosition, Backend, TokenBatch};
use gato_tokenizers::{to_batch, FieldValue, SequenceBuilder, Timestep, TokenSequence};
use gato_transformer::{
    last_logits_in_into, ActionSampler, DecodeState, GatoTransformer, WindowPolicy,
};

use crate::error::Result;

/// One acted timestep.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// Timestep index.
    pub timestep: usize,
    /// Sampled action tokens.
    pub tokens: Vec<u32>,
    /// The recorded (expert) action tokens.
    pub expert_tokens: Vec<u32>,
    /// Sampled action, decoded.
    pub action: BTreeMap<String, FieldValue>,
    /// Recorded action.
    pub expert: BTreeMap<String, FieldValue>,
    /// Seconds from observation to the last action token.
    pub seconds: f64,
}

impl StepResult {
    /// Whether every action token equals the expert's.
    pub fn agrees(&self) -> bool {
        self.tokens == self.expert_tokens
    }
}

fn single(seq: &TokenSequence) -> TokenBatch {
    to_batch(&[seq])
}

/// Walk `steps`, acting at each one. `prompt` (already tokenized) is fed first; `window` says what happens to the
/// KV cache once the context window is full.
pub fn act_episode(
    model: &GatoTransformer,
    be: &dyn Backend,
    builder: &SequenceBuilder,
    steps: &[Timestep],
    prompt: Option<&TokenSequence>,
    sampler: &mut ActionSampler,
    window: WindowPolicy,
) -> Result<Vec<StepResult>> {
    let mut state = DecodeState::with_policy(model, window);
    if let Some(p) = prompt.filter(|p| !p.is_empty()) {
        state.push_last(model, be, &single(p))?;
    }
    let action_local = match model.config().action_local_position {
        ActionLocalPosition::None => None,
        ActionLocalPosition::Shared => Some(model.config().local_position_encoding_size as u32),
    };
    let n_actions = builder.action_tokens();
    let mut out = Vec::with_capacity(steps.len());
    let mut logits = Vec::new();
    for (t, step) in steps.iter().enumerate() {
        let start = Instant::now();
        let mut obs_seq = TokenSequence::default();
        builder.push_observation(t, step, &mut obs_seq)?;
        let obs = single(&obs_seq);
        let mut before_actions = 0;
        let mut tokens = Vec::with_capacity(n_actions);
        // The step on the backend's own threads (no hand-off per op); the action-token loop allocates nothing.
        run_scoped(be, || {
            let mut h = state.push_last(model, be, &obs)?;
            before_actions = state.len();
            for j in 0..n_actions {
                let legal = builder.legal_action_ids(j).unwrap_or(0..0);
                // Logits of the legal ids only (SPEC §7).
                last_logits_in_into(model, be, &h, legal.clone(), &mut logits)?;
                let id = sampler.sample_in(&logits, legal.start)?;
                tokens.push(id);
                if j + 1 < n_actions {
                    h = state.push_token(model, be, id, t as u32, action_local)?;
                }
            }
            Ok(())
        })?;
        let seconds = start.elapsed().as_secs_f64();
        let action = builder.decode_action(&tokens)?;
        // Teacher forcing: the recorded action replaces ours in the context.
        state.truncate(before_actions)?;
        let mut expert_seq = TokenSequence {
            patch_len: obs_seq.patch_len,
            ..Default::default()
        };
        builder.push_action(t, step, &mut expert_seq)?;
        let expert_tokens: Vec<u32> = expert_seq.tokens.iter().map(|x| x.id).collect();
        expert_seq.timestep_starts = vec![0];
        state.push_last(model, be, &single(&expert_seq))?;
        out.push(StepResult {
            timestep: t,
            tokens,
            expert_tokens,
            action,
            expert: step.actions.clone(),
            seconds,
        });
    }
    Ok(out)
}

/// The first whole timesteps of a demonstration that fit in `budget` tokens (SPEC §7: the default prompt).
pub fn prompt_from(demo: &TokenSequence, budget: usize) -> TokenSequence {
    let mut end_ts = 0;
    while end_ts < demo.timestep_starts.len() && demo.timestep_range(end_ts).end <= budget {
        end_ts += 1;
    }
    if end_ts == 0 {
        return TokenSequence::default();
    }
    let w = gato_tokenizers::Window {
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

/// Format a field value compactly for tables.
pub fn show(v: &FieldValue) -> String {
    match v {
        FieldValue::Discrete(x) => format!("{x:?}"),
        FieldValue::Continuous(x) => format!(
            "[{}]",
            x.iter()
                .map(|v| format!("{v:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        FieldValue::Text(s) => format!("{s:?}"),
        FieldValue::Image(i) => format!("image {}x{}x{}", i.height, i.width, i.channels),
    }
}
