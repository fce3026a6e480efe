//! A training run (design.md §8): batches sampled from a [`Dataset`] with a generator seeded by the run's seed
//! and the step number (so the data position of a checkpoint is its step, and a resumed run draws exactly the
//! batches the uninterrupted one would have), optimiser steps with gradient accumulation, residual dropout and
//! random patch positions from the same per-step seed, validation per task, and checkpoints written atomically
//! every N steps with the run's description (`run.json`). What happens is reported through [`Event`]s; the
//! caller draws progress bars, logs metrics and plots.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use gato_core::{Backend, EmbeddingMode, Error, Modality, TokenBatch};
use gato_data::Dataset;
use gato_tokenizers::{to_batch, TokenSequence};
use gato_transformer::atomic_dir::Overwrite;
use gato_transformer::{Dropout, GatoTransformer};
use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::error::{RunResult, TrainError};
use crate::trainer::{StepReport, Trainer};

/// What a run is: stored as `run.json` in each of its checkpoints, and read back by a resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Optimiser steps of the whole run (the learning-rate schedule spans them).
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch: usize,
    /// Micro-batches per optimiser step (gradient accumulation).
    pub accumulate: usize,
    /// Tokens per training sequence.
    pub seq_len: usize,
    /// Seed of the data order, patch positions and dropout masks.
    pub seed: u64,
    /// Validate every this many steps (and at the end); 0: only at the end.
    pub eval_every: usize,
    /// Write a checkpoint every this many steps (and at the end); 0: only at the end.
    pub checkpoint_every: usize,
    /// Checkpoints kept (the newest; at least 1).
    pub keep_checkpoints: usize,
    /// Fraction of each task's episodes held out for validation.
    pub validation_fraction: f64,
    /// The episode files, as given.
    pub data: Vec<String>,
    /// How tasks are mixed ([`gato_data::TaskWeights`] as text: `tokens`, `uniform` or `NAME=W,...`); runs
    /// written before the field existed mixed by tokens.
    #[serde(default = "tokens")]
    pub task_weights: String,
    /// Precision of the training steps' products as asked (`f32` or `bf16`; [`crate::effective_precision`] is what
    /// a backend gives); runs written before the field existed trained in f32.
    #[serde(default = "f32_precision")]
    pub precision: String,
}

fn f32_precision() -> String {
    "f32".into()
}

fn tokens() -> String {
    gato_data::TaskWeights::Tokens.to_string()
}

impl RunSpec {
    /// Every field within its range, with an error naming the field, the value and the range.
    pub fn validate(&self) -> RunResult<()> {
        let at_least_one = [
            ("steps", self.steps),
            ("batch", self.batch),
            ("accumulate", self.accumulate),
            ("seq", self.seq_len),
            ("keep-checkpoints", self.keep_checkpoints),
        ];
        for (field, v) in at_least_one {
            if v == 0 {
                return Err(TrainError::Options {
                    field: field.into(),
                    detail: "0 is out of range: allowed at least 1".into(),
                });
            }
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return Err(TrainError::Options {
                field: "validation-fraction".into(),
                detail: format!("{} is outside [0, 1)", self.validation_fraction),
            });
        }
        if let Err(e) = self.precision.parse::<gato_core::MatmulPrecision>() {
            return Err(TrainError::Options {
                field: "precision".into(),
                detail: e.to_string(),
            });
        }
        if let Err(e) = self.task_weights.parse::<gato_data::TaskWeights>() {
            return Err(TrainError::Options {
                field: "task-weights".into(),
                detail: e.to_string(),
            });
        }
        Ok(())
    }
}

/// Per task, the validation windows' loss and token accuracy under teacher forcing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidationReport {
    /// The task (environment id).
    pub task: String,
    /// Mean `−log p` over every target (text and action tokens).
    pub loss: f64,
    /// Targets scored.
    pub targets: usize,
    /// Fraction of action tokens whose most likely token is the expert's.
    pub action_accuracy: f64,
    /// Action tokens scored.
    pub action_targets: usize,
}

/// What a run reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    /// An optimiser step finished.
    Step {
        /// The trainer's report.
        report: &'a StepReport,
        /// Real (unpadded) tokens in the step's batches.
        tokens: usize,
        /// Wall time of the step, sampling included.
        seconds: f64,
    },
    /// Validation after `step` steps.
    Validation {
        /// Steps taken.
        step: usize,
        /// One report per task with held-out episodes.
        reports: &'a [ValidationReport],
    },
    /// A checkpoint after `step` steps.
    Checkpoint {
        /// Steps taken.
        step: usize,
        /// Its directory.
        dir: &'a Path,
    },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    /// Steps taken in total (a resumed run counts the earlier ones).
    pub steps: usize,
    /// Whether it stopped early because it was asked to.
    pub interrupted: bool,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
}

/// The directory of the checkpoint after `step` steps under `out`.
pub fn checkpoint_dir(out: &Path, step: usize) -> PathBuf {
    out.join("checkpoints").join(format!("step-{step:06}"))
}

/// The newest checkpoint under a run's output directory `out`, or `out` itself when it is a checkpoint.
pub fn latest_checkpoint(out: &Path) -> Option<PathBuf> {
    if out.join(checkpoint::OPTIMIZER_FILE).is_file() {
        return Some(out.to_path_buf());
    }
    step_dirs(out)
        .into_iter()
        .rev()
        .find(|p| p.join(checkpoint::OPTIMIZER_FILE).is_file())
}

/// The `checkpoints/step-N` directories under `out` (not the temporaries beside them), oldest first.
fn step_dirs(out: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(out.join("checkpoints")) else {
        return Vec::new();
    };
    // Ordered by the step number, not the name, so a run past step 999999 (six padded digits) still sorts right.
    let mut dirs: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let step = p
                .file_name()?
                .to_str()?
                .strip_prefix("step-")?
                .parse()
                .ok()?;
            Some((step, p))
        })
        .collect();
    dirs.sort();
    dirs.into_iter().map(|(_, p)| p).collect()
}

/// The run description stored in checkpoint `dir`, if it has one.
pub fn read_spec(dir: &Path) -> RunResult<Option<RunSpec>> {
    let path = dir.join(checkpoint::RUN_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(TrainError::Options {
                field: path.display().to_string(),
                detail: e.to_string(),
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| TrainError::Options {
            field: path.display().to_string(),
            detail: format!("not a run description: {e}"),
        })
}

/// The seed of step `step` of a run seeded `seed` (SplitMix64 of both): batches, patch positions and dropout
/// masks of a step depend on nothing else.
pub fn step_seed(seed: u64, step: usize) -> u64 {
    let mut z = seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The micro-batches of step `step`.
pub fn step_batches(data: &Dataset, spec: &RunSpec, step: usize) -> Vec<TokenBatch> {
    let mut rng = gato_data::pipeline::rng(step_seed(spec.seed, step));
    (0..spec.accumulate)
        .map(|_| data.batch(spec.batch, &mut rng))
        .collect()
}

/// Validation of `model` on every task of `data` with held-out episodes, `chunk` windows per forward pass.
pub fn validate(
    model: &GatoTransformer,
    be: &dyn Backend,
    data: &Dataset,
    chunk: usize,
) -> RunResult<Vec<ValidationReport>> {
    let mut out = Vec::new();
    for (task, seqs) in data.validation() {
        let (mut nll, mut targets, mut correct, mut actions) = (0.0, 0usize, 0usize, 0usize);
        for part in seqs.chunks(chunk.max(1)) {
            let refs: Vec<&TokenSequence> = part.iter().collect();
            for s in model.target_scores(be, &to_batch(&refs))? {
                nll += s.nll;
                targets += 1;
                if s.modality != Modality::Text {
                    actions += 1;
                    correct += s.correct as usize;
                }
            }
        }
        out.push(ValidationReport {
            task,
            loss: if targets == 0 {
                0.0
            } else {
                nll / targets as f64
            },
            targets,
            action_accuracy: if actions == 0 {
                0.0
            } else {
                correct as f64 / actions as f64
            },
            action_targets: actions,
        });
    }
    Ok(out)
}

/// Run `trainer` from its current step to `spec.steps` on `data`, writing checkpoints under `out`; stops early
/// (with a checkpoint) when `stop` is set. A non-finite loss or gradient ends the run with
/// [`TrainError::Diverged`], naming the last good checkpoint.
///
/// With `comm` (data parallel, design.md §8), this process is one rank: each step it takes its [`crate::shard`]
/// of the step's `spec.accumulate` micro-batches (which must divide by the world size) and steps with
/// [`Trainer::step_distributed`]; only rank 0 validates and writes checkpoints, and a stop asked on any rank stops
/// every rank after the same step. The data order depends on the step alone, so a run resumes with any world size.
#[allow(clippy::too_many_arguments)]
pub fn train(
    be: &dyn Backend,
    trainer: &mut Trainer,
    data: &Dataset,
    spec: &RunSpec,
    out: &Path,
    stop: &AtomicBool,
    comm: Option<&dyn crate::Communicator>,
    on_event: &mut dyn FnMut(Event<'_>),
) -> RunResult<RunOutcome> {
    spec.validate()?;
    if let Some(c) = comm {
        if c.world_size() == 0 || !spec.accumulate.is_multiple_of(c.world_size()) {
            return Err(TrainError::Options {
                field: "accumulate".into(),
                detail: format!(
                    "{} micro-batches per step cannot be shared by {} ranks: use a multiple of the world size",
                    spec.accumulate,
                    c.world_size()
                ),
            });
        }
    }
    let leader = comm.is_none_or(|c| c.rank() == 0);
    let run_json = serde_json::to_string_pretty(spec).map_err(|e| TrainError::Options {
        field: "run".into(),
        detail: e.to_string(),
    })?;
    let mut last: Option<PathBuf> = latest_checkpoint(out);
    let dropout_rate = trainer.config().dropout_rate;
    let save = |trainer: &Trainer, last: &mut Option<PathBuf>| -> RunResult<PathBuf> {
        let dir = checkpoint_dir(out, trainer.steps());
        checkpoint::save_with_run(trainer, be, &dir, Overwrite::Replace, Some(&run_json))?;
        *last = Some(dir.clone());
        prune(out, spec.keep_checkpoints);
        Ok(dir)
    };
    let mut interrupted = false;
    let mut saved_at = None;
    while trainer.steps() < spec.steps {
        let mut stopping = stop.load(Ordering::Relaxed);
        if let Some(c) = comm {
            // Every rank stops after the same step, whichever was asked.
            let mut any = [f64::from(u8::from(stopping))];
            c.all_reduce_sum_f64(&mut any)?;
            stopping = any[0] > 0.0;
        }
        if stopping {
            interrupted = true;
            break;
        }
        let step = trainer.steps();
        let t = Instant::now();
        let batches = step_batches(data, spec, step);
        let refs: Vec<&TokenBatch> = batches.iter().collect();
        let tokens = batches.iter().flat_map(|b| &b.lengths).sum();
        let seed = step_seed(spec.seed, step);
        let dropout = Dropout::new(dropout_rate, seed ^ 0xD0D0)?;
        let mode = EmbeddingMode::Train { seed };
        let report = match comm {
            None => trainer.step_accumulated(be, &refs, mode, dropout),
            Some(c) => crate::shard(&refs, c.rank(), c.world_size()).and_then(|mine| {
                let first = (c.rank() * mine.len()) as u64;
                trainer.step_distributed(be, c, mine, first, mode, dropout)
            }),
        }
        .map_err(|e| match e {
            Error::NonFinite { .. } => TrainError::Diverged {
                step,
                detail: e.to_string(),
                last_checkpoint: last.clone(),
            },
            other => TrainError::Core(other),
        })?;
        on_event(Event::Step {
            report: &report,
            tokens,
            seconds: t.elapsed().as_secs_f64(),
        });
        let done = trainer.steps();
        let finished = done == spec.steps;
        if leader && ((spec.eval_every > 0 && done.is_multiple_of(spec.eval_every)) || finished) {
            let reports = validate(&trainer.model()?, be, data, spec.batch)?;
            if !reports.is_empty() {
                on_event(Event::Validation {
                    step: done,
                    reports: &reports,
                });
            }
        }
        if leader
            && ((spec.checkpoint_every > 0 && done.is_multiple_of(spec.checkpoint_every))
                || finished)
        {
            let dir = save(trainer, &mut last)?;
            saved_at = Some(done);
            on_event(Event::Checkpoint {
                step: done,
                dir: &dir,
            });
        }
    }
    if leader && interrupted && saved_at != Some(trainer.steps()) && trainer.steps() > 0 {
        let dir = save(trainer, &mut last)?;
        on_event(Event::Checkpoint {
            step: trainer.steps(),
            dir: &dir,
        });
    }
    Ok(RunOutcome {
        steps: trainer.steps(),
        interrupted,
        checkpoint: last,
    })
}

/// Remove all but the newest `keep` checkpoints under `out` (best effort: a checkpoint that cannot be removed is
/// left in place).
fn prune(out: &Path, keep: usize) {
    let dirs = step_dirs(out);
    let excess = dirs.len().saturating_sub(keep.max(1));
    for d in &dirs[..excess] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_seeds_differ_by_step_and_seed() {
        let a: Vec<u64> = (0..100).map(|s| step_seed(1, s)).collect();
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 100);
        assert_ne!(step_seed(1, 5), step_seed(2, 5));
        assert_eq!(step_seed(7, 9), step_seed(7, 9));
    }
}
