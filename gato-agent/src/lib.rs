//! # gato-agent
//!
//! Acting with a Gato model (paper §2.4, `docs/design.md` §7), written once and used by every command that acts:
//!
//! - [`Agent`]: the online agent. [`Agent::reset`] starts an episode (optionally with a prompt: a demonstration
//!   of the task, see [`prompt_from`]); [`Agent::act`] takes an observation and returns the decoded action,
//!   sampled one token at a time among each field's legal ids. The KV cache and the context window
//!   ([`gato_transformer::WindowPolicy`]) live inside.
//! - [`evaluate_offline`]: the teacher-forced evaluation on a recorded episode — act at every step, then put the
//!   recorded action in the context in place of the sampled one, and count agreement with the expert.
//! - [`Environment`]: what a live simulator implements (reset with a seed, step with an action), with
//!   [`run_episode`] driving an agent through one; [`EpisodeReplay`] is a pure-Rust implementation that replays a
//!   recorded episode's observations and rewards.
//!
//! `gato act`, `gato demo` and `gato bench` all drive this one loop.

#![warn(missing_docs)]

mod agent;
pub mod bridge;
mod environment;
mod error;
mod eval;
mod mock;
mod offline;
mod prompt;
mod references;

pub use agent::{Action, Agent, StepObserver};
pub use environment::{run_episode, Environment, EpisodeReplay, EpisodeReport, Observation};
pub use error::{Error, Result};
pub use eval::{
    evaluate, mean_std, play_episode, EpisodeOutcome, EpisodeResult, EvalPlan, ExpertPlayer,
    Latency, ModelPlayer, Player, Policy, RandomPlayer, Summary,
};
pub use mock::MockEnv;
pub use offline::{evaluate_offline, StepResult};
pub use prompt::prompt_from;
pub use references::{Reference, References};
