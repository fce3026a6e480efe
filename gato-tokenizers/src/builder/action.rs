//! The action half of a timestep (paper §2.1, §2.4): action fields → tokens after the separator, and sampled
//! tokens → action values.

use std::collections::BTreeMap;

use super::SequenceBuilder;
use crate::error::{Error, Result};
use crate::sequence::{Token, TokenSequence};
use crate::spec::{FieldKind, FieldValue, Timestep};

impl SequenceBuilder {
    /// Append the action tokens of timestep `t`; `seq` is unchanged on error.
    pub fn push_action(&self, t: usize, step: &Timestep, seq: &mut TokenSequence) -> Result<()> {
        if let Some(extra) = step
            .actions
            .keys()
            .find(|k| !self.actions.iter().any(|f| &f.spec.key == *k))
        {
            return Err(Error::Field {
                timestep: t,
                detail: format!("action field `{extra}` is not in the spec"),
            });
        }
        let n_fields = seq.fields.len();
        let r = self.push_action_inner(t, step, seq);
        if r.is_err() {
            seq.fields.truncate(n_fields);
        }
        r
    }

    fn push_action_inner(&self, t: usize, step: &Timestep, seq: &mut TokenSequence) -> Result<()> {
        let mut ids = Vec::with_capacity(self.action_tokens());
        let mut fields = Vec::with_capacity(self.action_tokens());
        for f in &self.actions {
            let value = self.value(t, "action", f, &step.actions)?;
            let before = ids.len();
            match (value, &f.spec.kind) {
                (FieldValue::Discrete(v), FieldKind::Discrete { num_values }) => {
                    self.check_len(f, v.len())?;
                    self.discrete
                        .encode_bounded_into(&f.spec.key, v, *num_values, &mut ids)?;
                }
                (FieldValue::Continuous(v), FieldKind::Continuous { mu_law, .. }) => {
                    self.check_len(f, v.len())?;
                    self.continuous
                        .encode_into(&f.spec.key, v, *mu_law, &mut ids)?;
                }
                _ => {
                    unreachable!("actions are discrete or continuous, modality checked by `value`")
                }
            }
            let fi = seq.field_index(&f.spec.key);
            fields.extend(std::iter::repeat_n(
                (fi, f.spec.kind.modality()),
                ids.len() - before,
            ));
        }
        for (&id, &(field, modality)) in ids.iter().zip(&fields) {
            seq.tokens.push(Token {
                id,
                modality,
                timestep: t as u32,
                local_position: self.action_local(),
                patch_position: None,
                loss: true,
                field,
                prompt: false,
            });
        }
        Ok(())
    }

    /// Decode one timestep's action tokens back to values, field by field (design.md §7). The token count must match the
    /// spec; discrete tokens must lie in their field's legal range; continuous values are clamped into the field's
    /// bounds when it declares them.
    pub fn decode_action(&self, tokens: &[u32]) -> Result<BTreeMap<String, FieldValue>> {
        if tokens.len() != self.action_tokens() {
            return Err(Error::Shape {
                field: "action".into(),
                detail: format!(
                    "{} tokens, the action spec has {}",
                    tokens.len(),
                    self.action_tokens()
                ),
            });
        }
        let mut out = BTreeMap::new();
        let mut at = 0;
        for f in &self.actions {
            let n = f.spec.num_values();
            let chunk = &tokens[at..at + n];
            at += n;
            let value = match f.spec.kind {
                FieldKind::Discrete { num_values } => {
                    FieldValue::Discrete(self.discrete.decode(&f.spec.key, chunk, num_values)?)
                }
                FieldKind::Continuous { mu_law, bounds } => {
                    let mut v = self.continuous.decode(&f.spec.key, chunk, mu_law)?;
                    if let Some((lo, hi)) = bounds {
                        v.iter_mut().for_each(|x| *x = x.clamp(lo, hi));
                    }
                    FieldValue::Continuous(v)
                }
                _ => unreachable!("validated in new"),
            };
            out.insert(f.spec.key.clone(), value);
        }
        Ok(out)
    }
}
