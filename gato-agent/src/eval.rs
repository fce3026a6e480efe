//! Playing live episodes and scoring them (paper §4.1, `docs/design.md` §7): who acts ([`Player`]: the model,
//! the environment's expert, or a uniform random policy), one episode ([`play_episode`], timing the player and
//! the simulator apart), many episodes over parallel workers ([`evaluate`], a failed episode reported with its
//! reason and its environment restarted) and their summary ([`Summary`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use gato_core::Backend;
use gato_tokenizers::{
    FieldKind, FieldSpec, FieldValue, Image, SequenceBuilder, Timestep, TokenSequence,
};
use gato_transformer::{ActionSampler, GatoTransformer, Sampling, WindowPolicy};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::agent::Agent;
use crate::environment::{Environment, EpisodeReport, Observation};
use crate::error::{Error, Result};

/// Who chooses the actions.
pub trait Player {
    /// Start an episode whose seed is `seed` (players that sample reseed from it, so an episode's actions do not
    /// depend on which worker plays it).
    fn start(&mut self, seed: u64) -> Result<()>;
    /// The action for `obs` (its fields may be taken); `env` is there for players that ask it (the expert).
    fn act(
        &mut self,
        env: &mut dyn Environment,
        obs: &mut Observation,
    ) -> Result<BTreeMap<String, FieldValue>>;
    /// Whether the context window has filled and slid at least once (models only).
    fn window_full(&self) -> bool {
        false
    }
}

/// The model, through an [`Agent`] (one context per episode).
pub struct ModelPlayer<'a, 'm> {
    /// The agent.
    pub agent: &'a mut Agent<'m>,
    /// The backend it runs on.
    pub be: &'a dyn Backend,
    /// A demonstration read before the first observation (paper §4.1's prompt).
    pub prompt: Option<&'a TokenSequence>,
    /// How actions are sampled, reseeded from each episode's seed; `None` keeps the agent's sampler as it is.
    pub sampling: Option<Sampling>,
}

impl Player for ModelPlayer<'_, '_> {
    fn start(&mut self, seed: u64) -> Result<()> {
        if let Some(sampling) = self.sampling {
            self.agent.set_sampler(ActionSampler::new(sampling, seed)?);
        }
        self.agent.reset(self.be, self.prompt)
    }

    fn act(
        &mut self,
        _env: &mut dyn Environment,
        obs: &mut Observation,
    ) -> Result<BTreeMap<String, FieldValue>> {
        let step = Timestep {
            observations: std::mem::take(&mut obs.fields),
            actions: BTreeMap::new(),
        };
        Ok(self.agent.act(self.be, &step)?.values)
    }

    fn window_full(&self) -> bool {
        self.agent.state().rebuilds() > 0
    }
}

/// The environment's own expert ([`Environment::expert_action`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct ExpertPlayer;

impl Player for ExpertPlayer {
    fn start(&mut self, _seed: u64) -> Result<()> {
        Ok(())
    }

    fn act(
        &mut self,
        env: &mut dyn Environment,
        _obs: &mut Observation,
    ) -> Result<BTreeMap<String, FieldValue>> {
        env.expert_action()?.ok_or_else(|| Error::Environment {
            env: env.name().to_string(),
            detail: "has no expert policy".into(),
        })
    }
}

/// Uniform random actions over the action fields: discrete values uniform in `[0, n)`, continuous values uniform
/// in their bounds (`[-1, 1]` where a field has none) — gymnasium's `action_space.sample()` for these spaces.
#[derive(Debug)]
pub struct RandomPlayer {
    actions: Vec<FieldSpec>,
    rng: StdRng,
}

impl RandomPlayer {
    /// A random player over `actions` (the environment's action fields).
    pub fn new(actions: Vec<FieldSpec>) -> Self {
        RandomPlayer {
            actions,
            rng: StdRng::seed_from_u64(0),
        }
    }
}

impl Player for RandomPlayer {
    fn start(&mut self, seed: u64) -> Result<()> {
        self.rng = StdRng::seed_from_u64(seed ^ 0x005E_ED0F_0A11);
        Ok(())
    }

    fn act(
        &mut self,
        _env: &mut dyn Environment,
        _obs: &mut Observation,
    ) -> Result<BTreeMap<String, FieldValue>> {
        let mut out = BTreeMap::new();
        for f in &self.actions {
            let n = f.num_values().max(1);
            let v = match &f.kind {
                FieldKind::Discrete { num_values } => FieldValue::Discrete(
                    (0..n)
                        .map(|_| self.rng.random_range(0..(*num_values).max(1)) as i64)
                        .collect(),
                ),
                FieldKind::Continuous { bounds, .. } => {
                    let (lo, hi) = bounds.unwrap_or((-1.0, 1.0));
                    FieldValue::Continuous(
                        (0..n)
                            .map(|_| lo + (hi - lo) * self.rng.random::<f32>())
                            .collect(),
                    )
                }
                other => {
                    return Err(Error::Environment {
                        env: "random policy".into(),
                        detail: format!("action field `{}` is {other:?}", f.key),
                    })
                }
            };
            out.insert(f.key.clone(), v);
        }
        Ok(out)
    }
}

/// Time per step of the player, split by whether the context window had filled.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Seconds over the steps counted.
    pub seconds: f64,
    /// Steps counted.
    pub steps: usize,
}

impl Latency {
    fn add(&mut self, other: Latency) {
        self.seconds += other.seconds;
        self.steps += other.steps;
    }

    /// Mean milliseconds per step (`None` without steps).
    pub fn mean_ms(&self) -> Option<f64> {
        (self.steps > 0).then(|| self.seconds * 1e3 / self.steps as f64)
    }
}

/// One played episode.
#[derive(Debug, Clone, Default)]
pub struct EpisodeOutcome {
    /// Return, steps, success.
    pub report: EpisodeReport,
    /// Seconds in the player (the model's forward passes and sampling).
    pub player_seconds: f64,
    /// Seconds in the environment (reset and steps, including the bridge).
    pub env_seconds: f64,
    /// The player's time per step before the context window filled.
    pub before_full: Latency,
    /// The player's time per step after it filled.
    pub after_full: Latency,
    /// Rendered frames, when asked for and the environment renders.
    pub frames: Vec<Image>,
    /// Why there are no frames, when they were asked for and rendering failed.
    pub render_note: Option<String>,
}

/// Play one episode of `env` with `player` from `seed`, until the environment ends it or `max_steps` steps were
/// taken; keep rendered frames when `keep_frames`.
pub fn play_episode(
    player: &mut dyn Player,
    env: &mut dyn Environment,
    seed: u64,
    max_steps: usize,
    keep_frames: bool,
) -> Result<EpisodeOutcome> {
    player.start(seed)?;
    env.set_render(keep_frames);
    let mut out = EpisodeOutcome::default();
    let t = Instant::now();
    let mut obs = env.reset(seed)?;
    out.env_seconds += t.elapsed().as_secs_f64();
    out.report.success = obs.success;
    out.report.done = obs.done();
    while !out.report.done && out.report.steps < max_steps {
        if keep_frames {
            out.frames.extend(obs.frame.take());
        }
        let full = player.window_full();
        let t = Instant::now();
        let action = player.act(env, &mut obs)?;
        let dt = t.elapsed().as_secs_f64();
        out.player_seconds += dt;
        let lat = Latency {
            seconds: dt,
            steps: 1,
        };
        if full {
            out.after_full.add(lat);
        } else {
            out.before_full.add(lat);
        }
        let t = Instant::now();
        obs = env.step(&action)?;
        out.env_seconds += t.elapsed().as_secs_f64();
        out.report.steps += 1;
        out.report.episode_return += obs.reward;
        out.report.success = obs.success.or(out.report.success);
        out.report.done = obs.done();
    }
    if keep_frames {
        out.frames.extend(obs.frame.take());
        out.render_note = env.render_note();
    }
    Ok(out)
}

/// Who acts in [`evaluate`]; each worker thread builds its own player from this.
pub enum Policy<'m> {
    /// The model, with an agent per worker.
    Model {
        /// The model.
        model: &'m GatoTransformer,
        /// Observations in, actions out.
        builder: &'m SequenceBuilder,
        /// The backend.
        be: &'m dyn Backend,
        /// How actions are sampled (reseeded per episode).
        sampling: Sampling,
        /// What happens when the context window is full.
        window: WindowPolicy,
        /// The prompt read before the first observation.
        prompt: Option<&'m TokenSequence>,
    },
    /// The environment's expert.
    Expert,
    /// Uniform random actions over these action fields.
    Random(Vec<FieldSpec>),
}

/// How many episodes, where, from which seeds.
#[derive(Debug, Clone)]
pub struct EvalPlan {
    /// Episodes; episode `i` is played from seed `seed + i`.
    pub episodes: usize,
    /// Parallel workers (threads, each with its own environment and player).
    pub workers: usize,
    /// Seed of episode 0.
    pub seed: u64,
    /// Steps after which an episode is cut short.
    pub max_steps: usize,
    /// Keep the rendered frames of episode 0 (for a video).
    pub frames_of_first: bool,
}

/// One episode's result: its outcome, or why it failed.
#[derive(Debug, Clone)]
pub struct EpisodeResult {
    /// Index in the plan.
    pub index: usize,
    /// Its seed.
    pub seed: u64,
    /// What happened.
    pub outcome: std::result::Result<EpisodeOutcome, String>,
}

/// Play `plan.episodes` episodes over `plan.workers` threads. Each thread makes its environment with `new_env`
/// and its player from `policy`; an episode that fails (the environment crashed, hung, sent something malformed,
/// or the player failed) is reported with the reason, the thread's environment is dropped and made anew for the
/// next episode, and the evaluation goes on. `on_done` is called as each episode ends (for progress bars).
/// Results come back in episode order.
pub fn evaluate<E: Environment>(
    plan: &EvalPlan,
    policy: &Policy<'_>,
    new_env: &(dyn Fn() -> Result<E> + Sync),
    on_done: &(dyn Fn(&EpisodeResult) + Sync),
) -> Vec<EpisodeResult> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(plan.episodes));
    let worker = || {
        let mut agent = match policy {
            Policy::Model {
                model,
                builder,
                window,
                ..
            } => Some(Agent::new(
                model,
                builder,
                ActionSampler::new(Sampling::Argmax, 0).expect("argmax takes no parameter"),
                *window,
            )),
            _ => None,
        };
        let mut env: Option<E> = None;
        loop {
            let index = next.fetch_add(1, Ordering::SeqCst);
            if index >= plan.episodes {
                break;
            }
            let seed = plan.seed.wrapping_add(index as u64);
            let outcome = (|| -> Result<EpisodeOutcome> {
                if env.is_none() {
                    env = Some(new_env()?);
                }
                let e = env.as_mut().expect("made above");
                let frames = plan.frames_of_first && index == 0;
                match (policy, agent.as_mut()) {
                    (
                        Policy::Model {
                            be,
                            sampling,
                            prompt,
                            ..
                        },
                        Some(agent),
                    ) => {
                        let mut p = ModelPlayer {
                            agent,
                            be: *be,
                            prompt: *prompt,
                            sampling: Some(*sampling),
                        };
                        play_episode(&mut p, e, seed, plan.max_steps, frames)
                    }
                    (Policy::Random(actions), _) => play_episode(
                        &mut RandomPlayer::new(actions.clone()),
                        e,
                        seed,
                        plan.max_steps,
                        frames,
                    ),
                    _ => play_episode(&mut ExpertPlayer, e, seed, plan.max_steps, frames),
                }
            })();
            if outcome.is_err() {
                env = None; // restart: the environment may be in any state
            }
            let r = EpisodeResult {
                index,
                seed,
                outcome: outcome.map_err(|e| e.to_string()),
            };
            on_done(&r);
            if let Ok(mut rs) = results.lock() {
                rs.push(r);
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 0..plan.workers.clamp(1, plan.episodes.max(1)) {
            s.spawn(worker);
        }
    });
    let mut rs = results.into_inner().unwrap_or_else(|p| p.into_inner());
    rs.sort_by_key(|r| r.index);
    rs
}

/// Mean and (population) standard deviation; `(NaN, NaN)` for no values.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// What an evaluation of one environment comes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Episodes played to the end (or to `max_steps`).
    pub episodes: usize,
    /// Episodes that failed, with their reasons.
    pub failures: Vec<(usize, String)>,
    /// Mean return over the played episodes.
    pub mean_return: f64,
    /// Standard deviation of the return.
    pub std_return: f64,
    /// Fraction of episodes that succeeded, where the task reports success.
    pub success_rate: Option<f64>,
    /// Environment steps over all played episodes.
    pub steps: usize,
    /// Seconds in the player, over all episodes.
    pub player_seconds: f64,
    /// Seconds in the environment, over all episodes.
    pub env_seconds: f64,
    /// The player's time per step before the context window filled.
    pub before_full: Latency,
    /// After it filled.
    pub after_full: Latency,
}

impl Summary {
    /// Summarise episode results.
    pub fn of(results: &[EpisodeResult]) -> Self {
        let ok: Vec<&EpisodeOutcome> = results
            .iter()
            .filter_map(|r| r.outcome.as_ref().ok())
            .collect();
        let returns: Vec<f64> = ok.iter().map(|o| o.report.episode_return).collect();
        let (mean_return, std_return) = mean_std(&returns);
        let with_success: Vec<bool> = ok.iter().filter_map(|o| o.report.success).collect();
        let mut before_full = Latency::default();
        let mut after_full = Latency::default();
        for o in &ok {
            before_full.add(o.before_full);
            after_full.add(o.after_full);
        }
        Summary {
            episodes: ok.len(),
            failures: results
                .iter()
                .filter_map(|r| r.outcome.as_ref().err().map(|e| (r.index, e.clone())))
                .collect(),
            mean_return,
            std_return,
            success_rate: (!with_success.is_empty()).then(|| {
                with_success.iter().filter(|&&s| s).count() as f64 / with_success.len() as f64
            }),
            steps: ok.iter().map(|o| o.report.steps).sum(),
            player_seconds: ok.iter().map(|o| o.player_seconds).sum(),
            env_seconds: ok.iter().map(|o| o.env_seconds).sum(),
            before_full,
            after_full,
        }
    }
}
