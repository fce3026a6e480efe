//! Token sequences: the tokens of one or more timesteps with their patches, and windows of whole timesteps
//! (design.md §4).

use std::ops::Range;

use gato_core::{Modality, PatchPosition, TokenBatch};
use serde::Serialize;

use crate::error::{Error, Result};

/// One token of a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Token {
    /// Token id; for [`Modality::Image`], the index of the patch in [`TokenSequence::patches`].
    pub id: u32,
    /// Modality.
    pub modality: Modality,
    /// Timestep within its episode.
    pub timestep: u32,
    /// Local position among the observation tokens of the timestep (App. C.3); `None` for the separator and
    /// actions unless `action_local_position = shared`.
    pub local_position: Option<u32>,
    /// Where a patch sits in its image.
    pub patch_position: Option<PatchPosition>,
    /// Whether the token is a prediction target (§2.3).
    pub loss: bool,
    /// Index of the field in [`TokenSequence::fields`].
    pub field: u16,
    /// Whether the token belongs to a prompt.
    pub prompt: bool,
}

/// A token sequence with its patches.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct TokenSequence {
    /// The tokens in order.
    pub tokens: Vec<Token>,
    /// Patch pixels, `[num_patches, P, P, C]` flattened.
    #[serde(skip)]
    pub patches: Vec<f32>,
    /// Values per patch.
    pub patch_len: usize,
    /// Field names (`|` for the separator).
    pub fields: Vec<String>,
    /// Index of the first token of each timestep, in order.
    pub timestep_starts: Vec<usize>,
}

/// A range of whole timesteps of a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    /// First token.
    pub start: usize,
    /// One past the last token.
    pub end: usize,
    /// First timestep (index into `timestep_starts`).
    pub first_timestep: usize,
    /// Number of timesteps.
    pub timesteps: usize,
}

impl TokenSequence {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokens of timestep `i` (index into `timestep_starts`).
    pub fn timestep_range(&self, i: usize) -> Range<usize> {
        let start = self.timestep_starts[i];
        let end = self
            .timestep_starts
            .get(i + 1)
            .copied()
            .unwrap_or(self.tokens.len());
        start..end
    }

    /// Values of patch `i`.
    pub fn patch(&self, i: usize) -> &[f32] {
        &self.patches[i * self.patch_len..(i + 1) * self.patch_len]
    }

    pub(crate) fn field_index(&mut self, name: &str) -> u16 {
        match self.fields.iter().position(|f| f == name) {
            Some(i) => i as u16,
            None => {
                self.fields.push(name.to_string());
                (self.fields.len() - 1) as u16
            }
        }
    }

    /// Split into consecutive windows of at most `l` tokens, each made of whole timesteps (design.md §4). A timestep
    /// longer than `l` is an error naming it.
    pub fn windows(&self, l: usize) -> Result<Vec<Window>> {
        let mut out = Vec::new();
        let mut cur: Option<Window> = None;
        for i in 0..self.timestep_starts.len() {
            let r = self.timestep_range(i);
            if r.len() > l {
                return Err(Error::TooLong {
                    timestep: self.tokens[r.start].timestep as usize,
                    tokens: r.len(),
                    limit: l,
                    what: "the window length L",
                });
            }
            match &mut cur {
                Some(w) if r.end - w.start <= l => {
                    w.end = r.end;
                    w.timesteps += 1;
                }
                _ => {
                    if let Some(w) = cur.take() {
                        out.push(w);
                    }
                    cur = Some(Window {
                        start: r.start,
                        end: r.end,
                        first_timestep: i,
                        timesteps: 1,
                    });
                }
            }
        }
        out.extend(cur);
        Ok(out)
    }

    /// The first window of whole timesteps that fits `l` tokens (design.md §4), and whether timesteps were left out.
    pub fn first_window(&self, l: usize) -> Result<(TokenSequence, bool)> {
        let windows = self.windows(l)?;
        let cut = windows.len() > 1;
        Ok(match windows.first() {
            Some(w) => (self.slice(w), cut),
            None => (self.clone(), cut),
        })
    }

    /// A copy of the tokens in `w`, with their patches re-indexed.
    pub fn slice(&self, w: &Window) -> TokenSequence {
        let mut out = TokenSequence {
            patch_len: self.patch_len,
            fields: self.fields.clone(),
            ..Default::default()
        };
        out.extend_from(self, w.start..w.end, false);
        out.timestep_starts = self.timestep_starts
            [w.first_timestep..w.first_timestep + w.timesteps]
            .iter()
            .map(|s| s - w.start)
            .collect();
        out
    }

    /// Append `src.tokens[range]` (with their patches and field names), optionally marking them as prompt.
    pub(crate) fn extend_from(
        &mut self,
        src: &TokenSequence,
        range: Range<usize>,
        as_prompt: bool,
    ) {
        for t in &src.tokens[range] {
            let mut t = *t;
            let name = &src.fields[t.field as usize];
            t.field = self.field_index(name);
            if t.modality == Modality::Image {
                let new_index = (self.patches.len() / self.patch_len.max(1)) as u32;
                self.patches.extend_from_slice(src.patch(t.id as usize));
                t.id = new_index;
            }
            if as_prompt {
                t.prompt = true;
                t.loss = false;
            }
            self.tokens.push(t);
        }
    }
}

/// Pad sequences to a common length and lay them out as a [`TokenBatch`] for the embeddings (§2.2). Patch indices
/// are renumbered into one shared patch list. Padding positions hold id 0, modality text, no local position and
/// no loss.
pub fn to_batch(seqs: &[&TokenSequence]) -> TokenBatch {
    let seq_len = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
    let n = seqs.len() * seq_len;
    let mut b = TokenBatch {
        batch: seqs.len(),
        seq_len,
        lengths: seqs.iter().map(|s| s.len()).collect(),
        ids: Vec::with_capacity(n),
        modality: Vec::with_capacity(n),
        local_position: Vec::with_capacity(n),
        loss: Vec::with_capacity(n),
        timestep: Vec::with_capacity(n),
        patches: Vec::new(),
        patch_positions: Vec::new(),
    };
    for s in seqs {
        for t in &s.tokens {
            if t.modality == Modality::Image {
                b.ids.push(b.patch_positions.len() as u32);
                b.patches.extend_from_slice(s.patch(t.id as usize));
                b.patch_positions
                    .push(t.patch_position.unwrap_or(PatchPosition {
                        row: 0,
                        rows: 1,
                        col: 0,
                        cols: 1,
                    }));
            } else {
                b.ids.push(t.id);
            }
            b.modality.push(t.modality);
            b.local_position.push(t.local_position);
            b.loss.push(t.loss);
            b.timestep.push(t.timestep);
        }
        for _ in s.len()..seq_len {
            b.ids.push(0);
            b.modality.push(Modality::Text);
            b.local_position.push(None);
            b.loss.push(false);
            b.timestep.push(u32::MAX);
        }
    }
    b
}
