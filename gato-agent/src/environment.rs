//! Environments an agent acts in: the [`Environment`] trait a live simulator implements (the Python simulator
//! bridge will be one implementation), [`run_episode`] driving an [`Agent`] through one episode, and
//! [`EpisodeReplay`], a pure-Rust environment that replays a recorded episode.

use std::collections::BTreeMap;

use gato_core::Backend;
use gato_tokenizers::{FieldValue, Image, Timestep, TokenSequence};

use crate::agent::Agent;
use crate::error::{Error, Result};

/// What an environment returns after a reset or a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Observation fields by name, as the episode files and the sequence builder name them.
    pub fields: BTreeMap<String, FieldValue>,
    /// Reward of the step that led here (0 after a reset).
    pub reward: f64,
    /// The episode ended by the task's rules (success or failure).
    pub terminated: bool,
    /// The episode was cut short (a time limit).
    pub truncated: bool,
    /// Whether the task reports success, and if so whether it was reached.
    pub success: Option<bool>,
    /// A rendered frame, when the environment was asked to render (for videos).
    pub frame: Option<Image>,
}

impl Observation {
    /// Whether the episode is over.
    pub fn done(&self) -> bool {
        self.terminated || self.truncated
    }
}

/// A simulator the agent acts in (reset → step → … until done).
pub trait Environment {
    /// A short name for messages, e.g. `CartPole-v1`.
    fn name(&self) -> &str;
    /// Start a new episode from `seed`.
    fn reset(&mut self, seed: u64) -> Result<Observation>;
    /// Apply `action` (values by field, as the agent decoded them).
    fn step(&mut self, action: &BTreeMap<String, FieldValue>) -> Result<Observation>;
    /// The environment's own expert's action for the current state, where it has one (the Python simulators'
    /// scripted experts, the mock task's optimal policy). `None` by default.
    fn expert_action(&mut self) -> Result<Option<BTreeMap<String, FieldValue>>> {
        Ok(None)
    }
    /// Render frames (into [`Observation::frame`]) from the next reset on, or stop. Ignored by environments that
    /// do not render.
    fn set_render(&mut self, on: bool) {
        let _ = on;
    }
    /// Why rendered frames are missing, when rendering was asked for and failed.
    fn render_note(&self) -> Option<String> {
        None
    }
}

/// The outcome of one episode.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpisodeReport {
    /// Sum of the rewards (undiscounted return).
    pub episode_return: f64,
    /// Steps taken.
    pub steps: usize,
    /// Success, where the task reports it.
    pub success: Option<bool>,
    /// Whether the episode ended by itself (not by `max_steps`).
    pub done: bool,
}

/// Play one episode of `env` with `agent`: reset both (the agent with `prompt`), then act until the environment
/// says the episode is over or `max_steps` steps were taken.
pub fn run_episode(
    agent: &mut Agent<'_>,
    be: &dyn Backend,
    env: &mut dyn Environment,
    seed: u64,
    prompt: Option<&TokenSequence>,
    max_steps: usize,
) -> Result<EpisodeReport> {
    let mut player = crate::eval::ModelPlayer {
        agent,
        be,
        prompt,
        sampling: None,
    };
    Ok(crate::eval::play_episode(&mut player, env, seed, max_steps, false)?.report)
}

/// A recorded episode as an environment: each step returns the next recorded observation and reward, whatever
/// the action (which must still name the recorded action's fields). For tests and for running the acting loop
/// without a simulator.
pub struct EpisodeReplay {
    name: String,
    steps: Vec<Timestep>,
    rewards: Vec<f64>,
    next: usize,
}

impl EpisodeReplay {
    /// Replay `steps` with their `rewards` (one per step; missing ones count as 0).
    pub fn new(name: impl Into<String>, steps: Vec<Timestep>, rewards: Vec<f64>) -> Result<Self> {
        let name = name.into();
        if steps.is_empty() {
            return Err(Error::Environment {
                env: name,
                detail: "an episode to replay needs at least one timestep".into(),
            });
        }
        Ok(EpisodeReplay {
            name,
            steps,
            rewards,
            next: 0,
        })
    }

    fn observation(&self, i: usize, reward: f64) -> Observation {
        let last = i + 1 >= self.steps.len();
        Observation {
            fields: self.steps[i].observations.clone(),
            reward,
            terminated: last,
            truncated: false,
            success: None,
            frame: None,
        }
    }
}

impl Environment for EpisodeReplay {
    fn name(&self) -> &str {
        &self.name
    }

    fn reset(&mut self, _seed: u64) -> Result<Observation> {
        self.next = 1;
        Ok(self.observation(0, 0.0))
    }

    fn step(&mut self, action: &BTreeMap<String, FieldValue>) -> Result<Observation> {
        let i = self.next;
        if i == 0 || i >= self.steps.len() {
            return Err(Error::Environment {
                env: self.name.clone(),
                detail: format!(
                    "step called {} (reset first; the episode has {} timesteps)",
                    if i == 0 {
                        "before reset"
                    } else {
                        "after the episode ended"
                    },
                    self.steps.len()
                ),
            });
        }
        let expected: Vec<&String> = self.steps[i - 1].actions.keys().collect();
        let got: Vec<&String> = action.keys().collect();
        if expected != got {
            return Err(Error::Environment {
                env: self.name.clone(),
                detail: format!("action fields {got:?}, expected {expected:?}"),
            });
        }
        self.next += 1;
        let reward = self.rewards.get(i - 1).copied().unwrap_or(0.0);
        Ok(self.observation(i, reward))
    }
}
