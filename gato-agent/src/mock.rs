//! [`MockEnv`]: a deterministic pure-Rust task with a known optimal policy, so the acting loop, the evaluation and
//! the scoring are tested end to end without Python. The Python worker's `--env mock` is the same task.

use std::collections::BTreeMap;

use gato_tokenizers::{EnvSpec, FieldKind, FieldSpec, FieldValue};

use crate::environment::{Environment, Observation};
use crate::error::{Error, Result};

/// Observe a value `s` in `[0, 4)`; the action equal to `s` earns 1, any other 0; then `s ← (3s + 1) mod 4`.
/// Episodes last [`MockEnv::LENGTH`] steps and start from `seed mod 4`. The optimal return is `LENGTH`, a uniform
/// random policy's expected return `LENGTH / 4`; success is a perfect episode.
#[derive(Debug, Clone, Default)]
pub struct MockEnv {
    state: i64,
    t: usize,
    hits: usize,
}

impl MockEnv {
    /// Steps per episode.
    pub const LENGTH: usize = 10;
    /// Values (observations and actions).
    pub const VALUES: u32 = 4;

    /// A new environment (reset it before stepping).
    pub fn new() -> Self {
        Self::default()
    }

    /// Its fields, named as the episode files name them.
    pub fn spec() -> EnvSpec {
        let field = |key: &str, shape: Vec<usize>| FieldSpec {
            key: key.into(),
            kind: FieldKind::Discrete {
                num_values: Self::VALUES,
            },
            shape,
        };
        EnvSpec {
            observations: vec![field("discrete_observations", vec![1])],
            actions: vec![field("discrete_actions", vec![])],
        }
    }

    fn observation(&self, reward: f64) -> Observation {
        let done = self.t >= Self::LENGTH;
        Observation {
            fields: BTreeMap::from([(
                "discrete_observations".to_string(),
                FieldValue::Discrete(vec![self.state]),
            )]),
            reward,
            terminated: done,
            truncated: false,
            success: done.then_some(self.hits == Self::LENGTH),
            frame: None,
        }
    }

    fn error(detail: String) -> Error {
        Error::Environment {
            env: "mock".into(),
            detail,
        }
    }
}

impl Environment for MockEnv {
    fn name(&self) -> &str {
        "mock"
    }

    fn reset(&mut self, seed: u64) -> Result<Observation> {
        *self = MockEnv {
            state: (seed % Self::VALUES as u64) as i64,
            t: 0,
            hits: 0,
        };
        Ok(self.observation(0.0))
    }

    fn step(&mut self, action: &BTreeMap<String, FieldValue>) -> Result<Observation> {
        if self.t >= Self::LENGTH {
            return Err(Self::error("step after the episode ended".into()));
        }
        let a = match action.get("discrete_actions") {
            Some(FieldValue::Discrete(v)) if v.len() == 1 => v[0],
            other => {
                return Err(Self::error(format!(
                    "action `discrete_actions` is {other:?}, expected one value"
                )))
            }
        };
        if !(0..Self::VALUES as i64).contains(&a) {
            return Err(Self::error(format!(
                "action {a} is outside [0, {})",
                Self::VALUES
            )));
        }
        let reward = if a == self.state { 1.0 } else { 0.0 };
        self.hits += (a == self.state) as usize;
        self.t += 1;
        self.state = (self.state * 3 + 1) % Self::VALUES as i64;
        Ok(self.observation(reward))
    }

    fn expert_action(&mut self) -> Result<Option<BTreeMap<String, FieldValue>>> {
        Ok(Some(BTreeMap::from([(
            "discrete_actions".to_string(),
            FieldValue::Discrete(vec![self.state]),
        )])))
    }
}
