//! Teacher-forced evaluation on a recorded episode (`gato act`): act at every step, then replace the sampled
//! action by the recorded one in the context, so each step conditions on the real trajectory, and count how often
//! the agent agrees with the expert.

use std::collections::BTreeMap;
use std::time::Instant;

use gato_core::Backend;
use gato_tokenizers::{FieldValue, Timestep};

use crate::agent::{Agent, StepObserver};
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
    /// Seconds from the observation to the last action token.
    pub seconds: f64,
}

impl StepResult {
    /// Whether every action token equals the expert's.
    pub fn agrees(&self) -> bool {
        self.tokens == self.expert_tokens
    }
}

/// Walk `steps` with `agent` (reset beforehand, with its prompt if any), acting at each one with teacher forcing;
/// `observer` sees every step's parts (pass `&mut ()` for none).
pub fn evaluate_offline(
    agent: &mut Agent<'_>,
    be: &dyn Backend,
    steps: &[Timestep],
    observer: &mut dyn StepObserver,
) -> Result<Vec<StepResult>> {
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        let timestep = agent.timestep();
        let start = Instant::now();
        let action = agent.act_observed(be, step, observer)?;
        let seconds = start.elapsed().as_secs_f64();
        let expert_tokens = agent.replace_action(step)?;
        out.push(StepResult {
            timestep,
            tokens: action.tokens,
            expert_tokens,
            action: action.values,
            expert: step.actions.clone(),
            seconds,
        });
    }
    Ok(out)
}
