//! Incremental decoding with a KV cache and a sliding context window (design.md §6–§7).
//!
//! [`DecodeState`] holds the tokens seen so far (a batch of one) and every layer's cached keys and values. Pushing
//! tokens runs only the new ones through the model. When the context window (`token_sequence_length`, 1024) would
//! overflow, the oldest **whole timesteps** are dropped; what happens to the cache is the [`WindowPolicy`]: by
//! default (design.md §6) it is rebuilt from the tokens that remain, which is exact but costs a forward pass over the
//! window at every step once the window is full (about ten times a step's cost for `small`); the opt-in
//! [`WindowPolicy::Slide`] keeps the cached keys and values of the remaining tokens, so a step keeps its cost.

use gato_core::{Backend, DType, Error, Result, Shape, Tensor, TokenBatch};

use crate::kv_cache::LayerCache;
use crate::model::{single_token, GatoTransformer};

/// What [`DecodeState`] does with the KV cache when the oldest timesteps leave the context window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WindowPolicy {
    /// Recompute the keys and values of the tokens that remain (design.md §6): every step sees exactly what a fresh
    /// forward pass over the window would. Costs a forward pass over the window at each overflow.
    #[default]
    Rebuild,
    /// Drop the oldest timesteps' keys and values and keep the others as computed. Deeper layers' cached keys
    /// then still carry information from the dropped tokens (as in Transformer-XL's memory, which the paper used
    /// at evaluation time, §5), so logits differ from [`WindowPolicy::Rebuild`]'s after the first overflow; a step
    /// costs the same before and after the window fills. An approximation: opt in for real-time control.
    Slide,
}

impl std::str::FromStr for WindowPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "rebuild" => Ok(WindowPolicy::Rebuild),
            "slide" => Ok(WindowPolicy::Slide),
            other => Err(Error::invalid(
                "window policy",
                format!("got {other:?}, expected \"rebuild\" or \"slide\""),
            )),
        }
    }
}

/// Tokens seen and their cached keys/values.
pub struct DecodeState {
    cache: Vec<LayerCache>,
    history: TokenBatch,
    context: usize,
    rebuilds: usize,
    policy: WindowPolicy,
    /// The batch [`DecodeState::push_token`] refills for each token.
    token: TokenBatch,
    /// Under [`WindowPolicy::Rebuild`], the input embeddings of the window's tokens, `[1, context, W]` (the first
    /// `len()` rows hold them), so a rebuild runs the blocks on stored rows instead of embedding the kept tokens —
    /// image patches through the ResNet block — again. Allocated at the first push.
    embedded: Option<Tensor>,
}

impl DecodeState {
    /// An empty state for `model`.
    pub fn new(model: &GatoTransformer) -> Self {
        let context = model.config().token_sequence_length;
        let mut history = TokenBatch::default();
        history.reserve(context);
        DecodeState {
            cache: vec![LayerCache::with_capacity(context); model.blocks.len()],
            history,
            context,
            rebuilds: 0,
            policy: WindowPolicy::default(),
            token: single_token(0, 0, None),
            embedded: None,
        }
    }

    /// An empty state for `model` that handles a full window with `policy`.
    pub fn with_policy(model: &GatoTransformer, policy: WindowPolicy) -> Self {
        DecodeState {
            policy,
            ..Self::new(model)
        }
    }

    /// What happens to the cache when the window slides.
    pub fn policy(&self) -> WindowPolicy {
        self.policy
    }

    /// Tokens in the window.
    pub fn len(&self) -> usize {
        self.history.lengths.first().copied().unwrap_or(0)
    }

    /// Whether no token has been pushed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many times the window slid (cache rebuilt, or its oldest entries dropped under
    /// [`WindowPolicy::Slide`]).
    pub fn rebuilds(&self) -> usize {
        self.rebuilds
    }

    /// The tokens in the window.
    pub fn history(&self) -> &TokenBatch {
        &self.history
    }

    /// First index at which dropping everything before it leaves room for `incoming` tokens, on a timestep
    /// boundary.
    fn cut_point(&self, incoming: usize) -> Result<usize> {
        let n = self.len();
        let ts = &self.history.timestep;
        for k in 1..=n {
            let boundary = k == n || ts[k] != ts[k - 1];
            if boundary && n - k + incoming <= self.context {
                return Ok(k);
            }
        }
        Err(Error::invalid(
            "DecodeState::push",
            format!(
                "{incoming} new tokens do not fit the context window of {} tokens",
                self.context
            ),
        ))
    }

    /// Run `new` (a batch of one) on top of the window; returns the final hidden states of the new tokens
    /// `[1, t, W]`.
    pub fn push(
        &mut self,
        model: &GatoTransformer,
        be: &dyn Backend,
        new: &TokenBatch,
    ) -> Result<Tensor> {
        self.push_with(model, be, new, false)
    }

    /// [`Self::push`] returning only the last new token's final hidden state `[1, 1, W]` — all the next token's
    /// logits need — and skipping the last block's work for the other new tokens (their keys and values are
    /// still cached). Acting pushes each observation this way.
    pub fn push_last(
        &mut self,
        model: &GatoTransformer,
        be: &dyn Backend,
        new: &TokenBatch,
    ) -> Result<Tensor> {
        self.push_with(model, be, new, true)
    }

    /// One discrete token (a sampled action token) at `timestep` with `local_position`: the same as
    /// [`Self::push_last`] of [`single_token`]`(id, timestep, local_position)`, refilling one batch held here, so
    /// that the acting loop — logits ([`last_logits_in_into`]), sample, push — allocates nothing per token.
    pub fn push_token(
        &mut self,
        model: &GatoTransformer,
        be: &dyn Backend,
        id: u32,
        timestep: u32,
        local_position: Option<u32>,
    ) -> Result<Tensor> {
        let mut token = std::mem::take(&mut self.token);
        token.ids[0] = id;
        token.timestep[0] = timestep;
        token.local_position[0] = local_position;
        let h = self.push_with(model, be, &token, true);
        self.token = token;
        h
    }

    fn push_with(
        &mut self,
        model: &GatoTransformer,
        be: &dyn Backend,
        new: &TokenBatch,
        last_only: bool,
    ) -> Result<Tensor> {
        if new.batch != 1 {
            return Err(Error::invalid(
                "DecodeState::push",
                format!("expects a batch of 1, got {}", new.batch),
            ));
        }
        let incoming = new.lengths[0];
        if self.len() + incoming > self.context {
            let cut = self.cut_point(incoming)?;
            let kept = self.len() - cut;
            self.history = self.history.slice_single(cut..self.len())?;
            self.history
                .reserve(self.context.saturating_sub(self.len()));
            match self.policy {
                WindowPolicy::Rebuild => {
                    // Emptied, not reallocated: the buffers are rewritten from the first slot.
                    for c in &mut self.cache {
                        c.truncate(0);
                    }
                    if kept > 0 {
                        // The kept tokens' stored embeddings move to the front; only their keys and values
                        // matter here, the outputs are discarded.
                        let x = match self.embedded.as_mut() {
                            Some(buf) => {
                                let rows = be.slice(buf, 1, cut, kept)?;
                                be.slice_assign(buf, &rows, 1, 0)?;
                                rows
                            }
                            None => model.embed_eval(be, &self.history)?,
                        };
                        model.extend_cache_embedded(be, &mut self.cache, x, true)?;
                    }
                }
                WindowPolicy::Slide => {
                    for c in &mut self.cache {
                        c.drop_front(be, cut)?;
                    }
                }
            }
            self.rebuilds += 1;
        }
        let x = model.embed_eval(be, new)?;
        if self.policy == WindowPolicy::Rebuild {
            if self.embedded.is_none() {
                let width = x.dims()[2];
                self.embedded = Some(be.zeros(&Shape::from([1, self.context, width]), DType::F32)?);
            }
            let at = self.len();
            if let Some(buf) = self.embedded.as_mut() {
                be.slice_assign(buf, &x, 1, at)?;
            }
        }
        let h = model.extend_cache_embedded(be, &mut self.cache, x, last_only)?;
        self.history.extend_single(new)?;
        Ok(h)
    }

    /// Forget everything after the first `len` tokens (e.g. sampled actions replaced by recorded ones).
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.len() {
            return Ok(());
        }
        self.history = self.history.slice_single(0..len)?;
        for c in &mut self.cache {
            c.truncate(len);
        }
        Ok(())
    }
}

/// Logits of the last position of hidden states `[1, t, W]` → host vector of `vocab` values.
pub fn last_logits(model: &GatoTransformer, be: &dyn Backend, hidden: &Tensor) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    logits_of_last(be, hidden, model.output_table(), &mut out)?;
    Ok(out)
}

/// Logits of the last position for the ids in `range` only (design.md §7: an action token's legal ids), computed against
/// just those rows of the output table — 1024 rows for a continuous field instead of 33025.
pub fn last_logits_in(
    model: &GatoTransformer,
    be: &dyn Backend,
    hidden: &Tensor,
    range: std::ops::Range<u32>,
) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    last_logits_in_into(model, be, hidden, range, &mut out)?;
    Ok(out)
}

/// [`last_logits_in`] into `out` (replacing what it held): with `out` reused from token to token, the acting
/// loop allocates nothing here.
pub fn last_logits_in_into(
    model: &GatoTransformer,
    be: &dyn Backend,
    hidden: &Tensor,
    range: std::ops::Range<u32>,
    out: &mut Vec<f32>,
) -> Result<()> {
    let rows = model.output_rows(be, range)?;
    logits_of_last(be, hidden, &rows, out)
}

/// `h_last · tableᵀ` for the last position of `[1, t, W]`, downloaded into `out`.
fn logits_of_last(
    be: &dyn Backend,
    hidden: &Tensor,
    table: &Tensor,
    out: &mut Vec<f32>,
) -> Result<()> {
    let &[_, t, _] = hidden.dims() else {
        return Err(Error::shape(
            "last_logits",
            format!("hidden states must be [B, t, W], got {}", hidden.shape()),
        ));
    };
    if t == 0 {
        return Err(Error::invalid(
            "last_logits",
            "no position to predict from (t = 0)",
        ));
    }
    let last = be.slice(hidden, 1, t - 1, 1)?;
    let logits = be.matmul(&last, table, &gato_core::MatmulSpec::nt())?;
    be.download_f32_into(&logits, out)
}
