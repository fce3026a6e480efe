//! The online agent (paper §2.4, `docs/design.md` §7): observe → act, one context per episode.
//!
//! A control step is one push and a few decoded tokens:
//!
//! 1. the previous step's action tokens that are not in the KV cache yet (the last sampled token, or a whole
//!    recorded action after [`Agent::replace_action`]), the observation's tokens and the separator, in one pass;
//! 2. for each action token: the logits of that field's legal ids only, a sample, and — except after the last
//!    token — a push of the sampled token.
//!
//! The last action token waits, and enters the cache with the next observation: nothing needs its keys and values
//! before then. The token loop allocates nothing once warm (logits into a reused vector, the token batch refilled
//! by [`DecodeState::push_token`]).

use std::collections::BTreeMap;

use gato_core::{run_scoped, ActionLocalPosition, Backend, TokenBatch};
use gato_tokenizers::{to_batch, FieldValue, SequenceBuilder, Timestep, TokenSequence};
use gato_transformer::{
    last_logits_in_into, single_token, ActionSampler, DecodeState, GatoTransformer, WindowPolicy,
};

use crate::error::Result;

/// Callbacks around the parts of a control step, for benchmarks (wall time, allocation counts). Every method
/// defaults to doing nothing; `()` is the observer that observes nothing.
pub trait StepObserver: Send {
    /// Before the push of pending action tokens + observation + separator.
    fn observation_start(&mut self) {}
    /// After that push; `cached` tokens are in the window now.
    fn observation_end(&mut self, cached: usize) {
        let _ = cached;
    }
    /// Before action token `j` is decoded (logits, sample, and the push of the token when one follows).
    fn token_start(&mut self, j: usize) {
        let _ = j;
    }
    /// After action token `j` was decoded and, if `pushed`, pushed onto a window of `cached` tokens.
    fn token_end(&mut self, j: usize, pushed: bool, cached: usize) {
        let _ = (j, pushed, cached);
    }
}

impl StepObserver for () {}

/// The action an agent took.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// The sampled tokens, one per action token of the spec.
    pub tokens: Vec<u32>,
    /// The tokens decoded to values, by field.
    pub values: BTreeMap<String, FieldValue>,
}

/// An agent acting with `model` in one environment whose observations and actions `builder` tokenizes.
pub struct Agent<'m> {
    model: &'m GatoTransformer,
    builder: &'m SequenceBuilder,
    sampler: ActionSampler,
    state: DecodeState,
    /// Action tokens of earlier steps not yet in the cache; pushed with the next observation.
    pending: Option<TokenBatch>,
    /// Timestep index of the next observation.
    t: usize,
    /// Window length after the last observation push (where the last action's tokens start).
    before_actions: usize,
    action_local: Option<u32>,
    logits: Vec<f32>,
}

impl<'m> Agent<'m> {
    /// A new agent with an empty context. `window` says what happens to the KV cache once the context window is
    /// full.
    pub fn new(
        model: &'m GatoTransformer,
        builder: &'m SequenceBuilder,
        sampler: ActionSampler,
        window: WindowPolicy,
    ) -> Self {
        let action_local = match model.config().action_local_position {
            ActionLocalPosition::None => None,
            ActionLocalPosition::Shared => Some(model.config().local_position_encoding_size as u32),
        };
        Agent {
            model,
            builder,
            sampler,
            state: DecodeState::with_policy(model, window),
            pending: None,
            t: 0,
            before_actions: 0,
            action_local,
            // The largest legal range is one field's: the continuous block (1024 ids by default).
            logits: Vec::with_capacity(builder.layout().vocab_size as usize),
        }
    }

    /// Start an episode: forget the context, then read `prompt` (a demonstration, see [`crate::prompt_from`]) if
    /// one is given and not empty.
    pub fn reset(&mut self, be: &dyn Backend, prompt: Option<&TokenSequence>) -> Result<()> {
        self.state.truncate(0)?;
        self.pending = None;
        self.t = 0;
        self.before_actions = 0;
        if let Some(p) = prompt.filter(|p| !p.is_empty()) {
            self.state.push_last(self.model, be, &to_batch(&[p]))?;
        }
        Ok(())
    }

    /// Observe `observation` (its `actions` are ignored) and return the action, sampled one token at a time among
    /// each field's legal ids and decoded.
    pub fn act(&mut self, be: &dyn Backend, observation: &Timestep) -> Result<Action> {
        self.act_observed(be, observation, &mut ())
    }

    /// [`Agent::act`], calling `observer` around the observation push and each decoded token.
    pub fn act_observed(
        &mut self,
        be: &dyn Backend,
        observation: &Timestep,
        observer: &mut dyn StepObserver,
    ) -> Result<Action> {
        let t = self.t;
        let mut obs_seq = TokenSequence::default();
        self.builder
            .push_observation(t, observation, &mut obs_seq)?;
        let obs = to_batch(&[&obs_seq]);
        let input = match self.pending.take() {
            Some(mut pending) => {
                pending.extend_single(&obs)?;
                pending
            }
            None => obs,
        };
        let n_actions = self.builder.action_tokens();
        let mut tokens = Vec::with_capacity(n_actions);
        let (model, builder, action_local) = (self.model, self.builder, self.action_local);
        let (state, sampler, logits) = (&mut self.state, &mut self.sampler, &mut self.logits);
        let mut before_actions = 0;
        // The step on the backend's own threads (no hand-off per op); the token loop allocates nothing.
        run_scoped(be, || {
            observer.observation_start();
            let mut h = state.push_last(model, be, &input)?;
            before_actions = state.len();
            observer.observation_end(before_actions);
            for j in 0..n_actions {
                observer.token_start(j);
                let legal = builder.legal_action_ids(j).unwrap_or(0..0);
                // Logits of the legal ids only (`docs/design.md` §7).
                last_logits_in_into(model, be, &h, legal.clone(), logits)?;
                let id = sampler.sample_in(logits, legal.start)?;
                tokens.push(id);
                let pushed = j + 1 < n_actions;
                if pushed {
                    h = state.push_token(model, be, id, t as u32, action_local)?;
                }
                observer.token_end(j, pushed, state.len());
            }
            Ok(())
        })?;
        self.before_actions = before_actions;
        if let Some(&last) = tokens.last() {
            self.pending = Some(single_token(last, t as u32, action_local));
        }
        self.t += 1;
        let values = self.builder.decode_action(&tokens)?;
        Ok(Action { tokens, values })
    }

    /// Teacher forcing: put `step.actions` (the recorded action) in the context in place of the action just
    /// taken, and return its tokens. The recorded tokens enter the cache with the next observation.
    pub fn replace_action(&mut self, step: &Timestep) -> Result<Vec<u32>> {
        let t = self.t.saturating_sub(1);
        self.state.truncate(self.before_actions)?;
        let mut seq = TokenSequence::default();
        self.builder.push_action(t, step, &mut seq)?;
        seq.timestep_starts = vec![0];
        let tokens = seq.tokens.iter().map(|x| x.id).collect();
        self.pending = Some(to_batch(&[&seq]));
        Ok(tokens)
    }

    /// Replace the action sampler (e.g. reseeded for a new episode).
    pub fn set_sampler(&mut self, sampler: ActionSampler) {
        self.sampler = sampler;
    }

    /// Index of the next observation's timestep (0 after [`Agent::reset`]).
    pub fn timestep(&self) -> usize {
        self.t
    }

    /// The KV cache and the tokens in the window.
    pub fn state(&self) -> &DecodeState {
        &self.state
    }

    /// The model.
    pub fn model(&self) -> &GatoTransformer {
        self.model
    }

    /// The sequence builder (observations in, actions out).
    pub fn builder(&self) -> &SequenceBuilder {
        self.builder
    }
}
