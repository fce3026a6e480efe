//! The sequence builder: timesteps of named fields → one token sequence in Gato's canonical order (paper §2.1,
//! App. B; design.md §4).
//!
//! A timestep is `[text, image patches, discrete and continuous tensors, '|', action tokens]`. Observation fields
//! of one modality are ordered lexicographically by key; discrete and continuous fields are both "tensors" and are
//! ordered together by key; tensors are flattened row-major; action fields are ordered by key. Episodes are
//! concatenated in time order. Every token records its id (or patch index), modality, timestep, local position,
//! patch position and loss mask. The loss mask is 1 for text and action tokens only (§2.3); the separator is a
//! target only with `separator_is_target`. Tokens of a prompt (§2.3) are conditioning, never targets.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use gato_core::{ActionLocalPosition, GatoConfig, Modality, PatchPosition, TokenLayout, Tokenizer};
use rand::{Rng, RngExt};

use crate::discrete::DiscreteValueTokenizer;
use crate::error::{Error, Result};
use crate::mu_law::ContinuousValueTokenizer;
use crate::patches::{ImagePatchTokenizer, Padding};
use crate::sequence::{Token, TokenSequence};
use crate::spec::{EnvSpec, FieldKind, FieldSpec, FieldValue, Timestep};
use crate::text::text_tokenizer;

mod action;

/// A field with its resolved tokenizer, in canonical order.
struct Field {
    spec: FieldSpec,
    text: Option<Box<dyn Tokenizer>>,
}

/// Builds token sequences for one environment (design.md §4).
pub struct SequenceBuilder {
    layout: TokenLayout,
    continuous: ContinuousValueTokenizer,
    discrete: DiscreteValueTokenizer,
    images: ImagePatchTokenizer,
    observations: Vec<Field>,
    actions: Vec<Field>,
    separator_is_target: bool,
    action_local_position: ActionLocalPosition,
    local_positions: usize,
    patch_size: usize,
    patch_channels: Option<usize>,
    padding: Padding,
}

impl std::fmt::Debug for SequenceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = |v: &[Field]| v.iter().map(|f| f.spec.key.clone()).collect::<Vec<_>>();
        f.debug_struct("SequenceBuilder")
            .field("observations", &keys(&self.observations))
            .field("actions", &keys(&self.actions))
            .finish()
    }
}

fn spec_err(detail: String) -> Error {
    Error::Field {
        timestep: 0,
        detail,
    }
}

impl SequenceBuilder {
    /// A builder for `spec` under `config`. Resolves text tokenizers by name or path, sorts the fields into the
    /// canonical order and validates the spec: unique keys, actions discrete or continuous, action shapes
    /// non-empty, discrete sizes within the layout, one channel count for all image fields, text tokenizers that
    /// fit the text block.
    pub fn new(config: &GatoConfig, spec: &EnvSpec) -> Result<Self> {
        config.validate()?;
        let layout = config.layout()?;
        let discrete = DiscreteValueTokenizer::from_layout(&layout);
        let mut keys = BTreeSet::new();
        let mut patch_channels = None;
        let mut resolve = |f: &FieldSpec, is_action: bool| -> Result<Field> {
            if !keys.insert((is_action, f.key.clone())) {
                return Err(spec_err(format!("field `{}` is declared twice", f.key)));
            }
            let mut text = None;
            match &f.kind {
                FieldKind::Text { tokenizer } if !is_action => {
                    let t = text_tokenizer(tokenizer)?;
                    if t.vocab_size() > layout.text.len() {
                        return Err(spec_err(format!(
                            "field `{}`: tokenizer `{}` has {} ids, the text block holds {}",
                            f.key,
                            t.name(),
                            t.vocab_size(),
                            layout.text.len()
                        )));
                    }
                    text = Some(t);
                }
                FieldKind::Image { channels } if !is_action => {
                    if *channels != config.image_channels {
                        return Err(spec_err(format!(
                            "field `{}` has {channels}-channel images, the model expects {} \
                             (config field image_channels)",
                            f.key, config.image_channels
                        )));
                    }
                    if *patch_channels.get_or_insert(*channels) != *channels {
                        return Err(spec_err(format!(
                            "field `{}`: {channels} channels, other image fields have {}",
                            f.key,
                            patch_channels.unwrap_or(0)
                        )));
                    }
                }
                FieldKind::Discrete { num_values } => {
                    if *num_values == 0 || *num_values > discrete.size() {
                        return Err(spec_err(format!(
                            "field `{}`: num_values = {num_values}, allowed [1, {}]",
                            f.key,
                            discrete.size()
                        )));
                    }
                }
                FieldKind::Continuous { bounds, .. } => {
                    if let Some((lo, hi)) = bounds {
                        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                            return Err(spec_err(format!(
                                "field `{}`: bounds ({lo}, {hi}) must be finite with lo ≤ hi",
                                f.key
                            )));
                        }
                    }
                }
                _ => {
                    return Err(spec_err(format!(
                        "action field `{}` must be discrete or continuous",
                        f.key
                    )))
                }
            }
            if is_action && f.num_values() == 0 {
                return Err(spec_err(format!(
                    "action field `{}` has shape {:?} with no values",
                    f.key, f.shape
                )));
            }
            Ok(Field {
                spec: f.clone(),
                text,
            })
        };
        let mut observations = spec
            .observations
            .iter()
            .map(|f| resolve(f, false))
            .collect::<Result<Vec<_>>>()?;
        let mut actions = spec
            .actions
            .iter()
            .map(|f| resolve(f, true))
            .collect::<Result<Vec<_>>>()?;
        observations.sort_by(|a, b| {
            (a.spec.kind.group(), &a.spec.key).cmp(&(b.spec.kind.group(), &b.spec.key))
        });
        actions.sort_by(|a, b| a.spec.key.cmp(&b.spec.key));
        Ok(SequenceBuilder {
            continuous: ContinuousValueTokenizer::from_layout(
                &layout,
                config.mu_law_mu,
                config.mu_law_m,
            ),
            discrete,
            images: ImagePatchTokenizer::with_patch_size(config.img_patch_size),
            layout,
            observations,
            actions,
            separator_is_target: config.separator_is_target,
            action_local_position: config.action_local_position,
            local_positions: config.local_position_encoding_size,
            patch_size: config.img_patch_size,
            patch_channels,
            padding: Padding::Reject,
        })
    }

    /// Pad images whose sides are not multiples of the patch size instead of rejecting them (design.md §3: only when
    /// the caller asks).
    pub fn with_image_padding(mut self, padding: Padding) -> Self {
        self.padding = padding;
        self
    }

    /// The token layout.
    pub fn layout(&self) -> &TokenLayout {
        &self.layout
    }

    /// Observation field keys in canonical order.
    pub fn observation_keys(&self) -> Vec<&str> {
        self.observations
            .iter()
            .map(|f| f.spec.key.as_str())
            .collect()
    }

    /// Action field keys in canonical order.
    pub fn action_keys(&self) -> Vec<&str> {
        self.actions.iter().map(|f| f.spec.key.as_str()).collect()
    }

    /// Number of action tokens per timestep.
    pub fn action_tokens(&self) -> usize {
        self.actions.iter().map(|f| f.spec.num_values()).sum()
    }

    /// Legal ids of action token `i` of a timestep (design.md §7): `[offset, offset + n)` for a discrete field, the
    /// continuous block for a continuous one.
    pub fn legal_action_ids(&self, i: usize) -> Option<Range<u32>> {
        let mut at = 0;
        for f in &self.actions {
            let n = f.spec.num_values();
            if i < at + n {
                return Some(match f.spec.kind {
                    FieldKind::Discrete { num_values } => self.discrete.token_range(num_values),
                    _ => self.continuous.token_range(),
                });
            }
            at += n;
        }
        None
    }

    fn empty_sequence(&self) -> TokenSequence {
        let c = self.patch_channels.unwrap_or(0);
        TokenSequence {
            patch_len: self.patch_size * self.patch_size * c,
            ..Default::default()
        }
    }

    fn action_local(&self) -> Option<u32> {
        match self.action_local_position {
            ActionLocalPosition::None => None,
            ActionLocalPosition::Shared => Some(self.local_positions as u32),
        }
    }

    /// Append the observation tokens of timestep `t` and the separator. Fails (leaving `seq` unchanged) on a
    /// missing field, a value of the wrong modality or size, NaN, out-of-range values or too many observation
    /// tokens for the local position table.
    pub fn push_observation(
        &self,
        t: usize,
        step: &Timestep,
        seq: &mut TokenSequence,
    ) -> Result<()> {
        let (n_tokens, n_patches, n_fields) =
            (seq.tokens.len(), seq.patches.len(), seq.fields.len());
        let r = self.push_observation_inner(t, step, seq);
        if r.is_err() {
            seq.tokens.truncate(n_tokens);
            seq.patches.truncate(n_patches);
            seq.fields.truncate(n_fields);
            if seq.timestep_starts.last() == Some(&n_tokens) {
                seq.timestep_starts.pop();
            }
        }
        r
    }

    fn value<'a>(
        &self,
        t: usize,
        role: &str,
        f: &Field,
        values: &'a BTreeMap<String, FieldValue>,
    ) -> Result<&'a FieldValue> {
        let v = values.get(&f.spec.key).ok_or_else(|| Error::Field {
            timestep: t,
            detail: format!("{role} field `{}` is missing", f.spec.key),
        })?;
        if v.modality() != f.spec.kind.modality() {
            return Err(Error::Field {
                timestep: t,
                detail: format!(
                    "{role} field `{}` holds {:?}, the spec says {:?}",
                    f.spec.key,
                    v.modality(),
                    f.spec.kind.modality()
                ),
            });
        }
        Ok(v)
    }

    fn check_len(&self, f: &Field, len: usize) -> Result<()> {
        if len != f.spec.num_values() {
            return Err(Error::Shape {
                field: f.spec.key.clone(),
                detail: format!(
                    "{len} values, shape {:?} needs {}",
                    f.spec.shape,
                    f.spec.num_values()
                ),
            });
        }
        Ok(())
    }

    fn push_observation_inner(
        &self,
        t: usize,
        step: &Timestep,
        seq: &mut TokenSequence,
    ) -> Result<()> {
        if let Some(extra) = step
            .observations
            .keys()
            .find(|k| !self.observations.iter().any(|f| &f.spec.key == *k))
        {
            return Err(Error::Field {
                timestep: t,
                detail: format!("observation field `{extra}` is not in the spec"),
            });
        }
        if seq.patch_len == 0 && self.patch_channels.is_some() {
            seq.patch_len = self.empty_sequence().patch_len;
        }
        seq.timestep_starts.push(seq.tokens.len());
        let first = seq.tokens.len();
        let mut ids = Vec::new();
        for f in &self.observations {
            let field = seq.field_index(&f.spec.key);
            let value = self.value(t, "observation", f, &step.observations)?;
            ids.clear();
            let push = |seq: &mut TokenSequence,
                        id: u32,
                        modality: Modality,
                        pos: Option<PatchPosition>,
                        loss: bool| {
                let local = (seq.tokens.len() - first) as u32;
                seq.tokens.push(Token {
                    id,
                    modality,
                    timestep: t as u32,
                    local_position: Some(local),
                    patch_position: pos,
                    loss,
                    field,
                    prompt: false,
                });
            };
            match (value, &f.spec.kind) {
                (FieldValue::Text(s), _) => {
                    let tok = f
                        .text
                        .as_ref()
                        .ok_or_else(|| spec_err(format!("no tokenizer for `{}`", f.spec.key)))?;
                    ids = tok.encode(s)?;
                    if let Some((i, &bad)) = ids
                        .iter()
                        .enumerate()
                        .find(|(_, &id)| !self.layout.text.contains(&id))
                    {
                        return Err(Error::OutOfRange {
                            field: f.spec.key.clone(),
                            what: "text token",
                            index: i,
                            value: bad.to_string(),
                            allowed: format!(
                                "[{}, {})",
                                self.layout.text.start, self.layout.text.end
                            ),
                        });
                    }
                    for &id in &ids {
                        push(seq, id, Modality::Text, None, true);
                    }
                }
                (FieldValue::Image(img), _) => {
                    if Some(img.channels) != self.patch_channels {
                        return Err(Error::Shape {
                            field: f.spec.key.clone(),
                            detail: format!(
                                "{} channels, the spec says {}",
                                img.channels,
                                self.patch_channels.unwrap_or(0)
                            ),
                        });
                    }
                    let first_patch = seq.patches.len() / seq.patch_len.max(1);
                    let (rows, cols) = self.images.patchify_into(
                        &f.spec.key,
                        &img.as_ref(),
                        self.padding,
                        &mut seq.patches,
                    )?;
                    for i in 0..rows * cols {
                        let pos = PatchPosition {
                            row: (i / cols) as u32,
                            rows: rows as u32,
                            col: (i % cols) as u32,
                            cols: cols as u32,
                        };
                        push(
                            seq,
                            (first_patch + i) as u32,
                            Modality::Image,
                            Some(pos),
                            false,
                        );
                    }
                }
                (FieldValue::Discrete(v), FieldKind::Discrete { num_values }) => {
                    self.check_len(f, v.len())?;
                    self.discrete
                        .encode_bounded_into(&f.spec.key, v, *num_values, &mut ids)?;
                    for &id in &ids {
                        push(seq, id, Modality::Discrete, None, false);
                    }
                }
                (FieldValue::Continuous(v), FieldKind::Continuous { mu_law, .. }) => {
                    self.check_len(f, v.len())?;
                    self.continuous
                        .encode_into(&f.spec.key, v, *mu_law, &mut ids)?;
                    for &id in &ids {
                        push(seq, id, Modality::Continuous, None, false);
                    }
                }
                _ => unreachable!("modality checked by `value`"),
            }
        }
        let observed = seq.tokens.len() - first;
        if observed > self.local_positions {
            return Err(Error::TooLong {
                timestep: t,
                tokens: observed,
                limit: self.local_positions,
                what: "the rows of the local position table",
            });
        }
        let field = seq.field_index("|");
        seq.tokens.push(Token {
            id: self.layout.separator,
            modality: Modality::Separator,
            timestep: t as u32,
            local_position: self.action_local(),
            patch_position: None,
            loss: self.separator_is_target,
            field,
            prompt: false,
        });
        Ok(())
    }

    /// Tokenize a whole episode: every timestep's observation, separator and action, in time order.
    pub fn episode(&self, steps: &[Timestep]) -> Result<TokenSequence> {
        let mut seq = self.empty_sequence();
        for (t, step) in steps.iter().enumerate() {
            self.push_observation(t, step, &mut seq)?;
            self.push_action(t, step, &mut seq)?;
        }
        Ok(seq)
    }

    /// Prefix `window` with a prompt from `prompt_episode` (another episode of the same task) with probability
    /// `probability` (§2.3, design.md §4: 0.25). Half the prompts are the episode's last whole timesteps that fit the
    /// budget `l − window.len()`, half start at a uniformly drawn timestep. Prompt tokens are marked and never
    /// targets.
    pub fn prompted(
        &self,
        window: &TokenSequence,
        prompt_episode: &TokenSequence,
        l: usize,
        probability: f64,
        rng: &mut impl Rng,
    ) -> TokenSequence {
        let budget = l.saturating_sub(window.len());
        let n = prompt_episode.timestep_starts.len();
        if budget == 0 || n == 0 || !rng.random_bool(probability.clamp(0.0, 1.0)) {
            return window.clone();
        }
        let fits = |a: usize, b: usize| {
            prompt_episode.timestep_range(b).end - prompt_episode.timestep_starts[a] <= budget
        };
        let (first, last) = if rng.random_bool(0.5) {
            // From the end: extend backwards while whole timesteps fit.
            let mut a = n;
            while a > 0 && fits(a - 1, n - 1) {
                a -= 1;
            }
            (a, n)
        } else {
            let a = rng.random_range(0..n);
            let mut b = a;
            while b < n && fits(a, b) {
                b += 1;
            }
            (a, b)
        };
        let mut out = TokenSequence {
            patch_len: window.patch_len.max(prompt_episode.patch_len),
            ..Default::default()
        };
        if first < last {
            let start = prompt_episode.timestep_starts[first];
            let end = prompt_episode.timestep_range(last - 1).end;
            out.timestep_starts = prompt_episode.timestep_starts[first..last]
                .iter()
                .map(|s| s - start)
                .collect();
            out.extend_from(prompt_episode, start..end, true);
        }
        let offset = out.tokens.len();
        out.timestep_starts
            .extend(window.timestep_starts.iter().map(|s| s + offset));
        out.extend_from(window, 0..window.len(), false);
        out
    }
}
