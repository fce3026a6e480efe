//! The training data pipeline (paper §2.3, `docs/design.md` §4 and §8): episode files → tasks (one per
//! environment, files of one environment merged) → `L`-token windows cut at timestep boundaries, with prompt
//! conditioning and per-task mixing, sampled by a seeded generator. Every episode is tokenized once, when the
//! dataset is built, so sampling a batch only slices and copies tokens.

use std::path::Path;

use gato_core::{GatoConfig, TokenBatch};
use gato_tokenizers::{to_batch, EnvSpec, SequenceBuilder, TokenSequence, Window};
use rand::rngs::StdRng;
use rand::RngExt;

use crate::error::{DataError, Result};
use crate::reader::EpisodeFile;
use crate::weights::TaskWeights;

/// One environment's episodes, tokenized, split by episode into training and validation.
pub struct Task {
    /// The environment id (`CartPole-v1`, ...).
    pub name: String,
    /// Tokenizes this environment's observations and actions.
    pub builder: SequenceBuilder,
    /// Training episodes.
    pub train: Vec<TokenSequence>,
    /// Validation episodes (never sampled for training).
    pub validation: Vec<TokenSequence>,
    /// The training windows: `(episode, window)`.
    windows: Vec<(usize, Window)>,
    /// Mixing weight (default: the task's training tokens; see [`Dataset::set_weights`]).
    pub weight: f64,
    spec: EnvSpec,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Task({}, {} train + {} validation episodes, {} windows, weight {})",
            self.name,
            self.train.len(),
            self.validation.len(),
            self.windows.len(),
            self.weight
        )
    }
}

impl Task {
    /// Training windows.
    pub fn windows(&self) -> usize {
        self.windows.len()
    }
}

/// Tasks and how to sample training sequences from them.
#[derive(Debug)]
pub struct Dataset {
    /// One task per environment, sorted by name.
    pub tasks: Vec<Task>,
    /// Tokens per sequence (`L`).
    pub seq_len: usize,
    /// Probability that a training sequence is prefixed by a prompt (0.25, §2.3).
    pub prompt_probability: f64,
}

fn invalid(file: &str, detail: String) -> DataError {
    DataError::Format {
        file: file.to_string(),
        detail,
    }
}

impl Dataset {
    /// Read, validate and tokenize `files`; episodes of each environment are split so that the last
    /// `validation_fraction` of them (at least one when there are two or more) are held out. Errors before any
    /// training: no file, an unreadable or invalid file, two files of one environment whose specs disagree, a
    /// timestep longer than the model's context.
    pub fn from_files(
        files: &[&Path],
        config: &GatoConfig,
        text_tokenizer: &str,
        validation_fraction: f64,
    ) -> Result<Self> {
        if files.is_empty() {
            return Err(invalid("(no files)", "no episode files given".into()));
        }
        let seq_len = config.token_sequence_length;
        let mut tasks: Vec<Task> = Vec::new();
        for path in files {
            let file = EpisodeFile::open(path)?;
            let spec = file.env_spec(text_tokenizer);
            let builder = file.builder(config, text_tokenizer)?;
            let episodes = (0..file.len())
                .map(|i| file.tokenize(i, &builder))
                .collect::<Result<Vec<_>>>()?;
            match tasks.iter_mut().find(|t| t.name == file.env_id()) {
                Some(t) if t.spec != spec => {
                    return Err(invalid(
                        file.name(),
                        format!(
                            "environment `{}` is also in another file with other fields or actions",
                            t.name
                        ),
                    ))
                }
                Some(t) => t.train.extend(episodes),
                None => tasks.push(Task {
                    name: file.env_id().to_string(),
                    builder,
                    train: episodes,
                    validation: Vec::new(),
                    windows: Vec::new(),
                    weight: 0.0,
                    spec,
                }),
            }
        }
        tasks.sort_by(|a, b| a.name.cmp(&b.name));
        for t in &mut tasks {
            let n = t.train.len();
            let held = if n >= 2 {
                ((n as f64 * validation_fraction).ceil() as usize).clamp(1, n - 1)
            } else {
                0
            };
            t.validation = t.train.split_off(n - held);
            for (e, ep) in t.train.iter().enumerate() {
                let ws = ep
                    .windows(seq_len)
                    .map_err(|err| invalid(&t.name, format!("episode {e}: {err}")))?;
                t.windows.extend(ws.into_iter().map(|w| (e, w)));
            }
            t.weight = t.train.iter().map(|s| s.len()).sum::<usize>() as f64;
        }
        Ok(Dataset {
            tasks,
            seq_len,
            prompt_probability: config.training.prompt_probability,
        })
    }

    /// Set every task's mixing weight (§3: datasets are sampled with per-task weights). Errors as
    /// [`TaskWeights::resolve`]; on error the weights are unchanged.
    pub fn set_weights(&mut self, weights: &TaskWeights) -> Result<()> {
        let tasks: Vec<(&str, usize)> = self
            .tasks
            .iter()
            .map(|t| (t.name.as_str(), t.train.iter().map(|s| s.len()).sum()))
            .collect();
        let resolved = weights.resolve(&tasks)?;
        for (t, w) in self.tasks.iter_mut().zip(resolved) {
            t.weight = w;
        }
        Ok(())
    }

    /// One training sequence: a task drawn by weight, one of its windows uniformly, prefixed with probability
    /// `prompt_probability` by a prompt from another of its training episodes (the same one when it has one).
    pub fn sample(&self, rng: &mut StdRng) -> TokenSequence {
        let total: f64 = self.tasks.iter().map(|t| t.weight).sum();
        let mut pick = rng.random::<f64>() * total;
        let task = self
            .tasks
            .iter()
            .find(|t| {
                pick -= t.weight;
                pick < 0.0
            })
            .unwrap_or(&self.tasks[self.tasks.len() - 1]);
        if task.windows.is_empty() {
            return TokenSequence::default();
        }
        let (e, w) = task.windows[rng.random_range(0..task.windows.len())];
        let window = task.train[e].slice(&w);
        let n = task.train.len();
        let other = if n > 1 {
            (e + 1 + rng.random_range(0..n - 1)) % n
        } else {
            e
        };
        task.builder.prompted(
            &window,
            &task.train[other],
            self.seq_len,
            self.prompt_probability,
            rng,
        )
    }

    /// A batch of `size` sampled sequences, padded to the longest.
    pub fn batch(&self, size: usize, rng: &mut StdRng) -> TokenBatch {
        let seqs: Vec<TokenSequence> = (0..size).map(|_| self.sample(rng)).collect();
        to_batch(&seqs.iter().collect::<Vec<_>>())
    }

    /// Every validation window of every task with held-out episodes, without prompts, by task:
    /// `(task, its windows)`; batch them with [`gato_tokenizers::to_batch`] in chunks of the size memory allows.
    pub fn validation(&self) -> Vec<(String, Vec<TokenSequence>)> {
        self.tasks
            .iter()
            .filter(|t| !t.validation.is_empty())
            .map(|t| {
                let seqs: Vec<TokenSequence> = t
                    .validation
                    .iter()
                    .flat_map(|ep| {
                        ep.windows(self.seq_len)
                            .unwrap_or_default()
                            .into_iter()
                            .map(|w| ep.slice(&w))
                    })
                    .collect();
                (t.name.clone(), seqs)
            })
            .collect()
    }
}

/// Keep the generator type in one place for callers: a seeded `StdRng`.
pub fn rng(seed: u64) -> StdRng {
    use rand::SeedableRng;
    StdRng::seed_from_u64(seed)
}
