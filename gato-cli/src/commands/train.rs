//! `gato train`: reads the episode files, builds or resumes the run, and draws what `gato_train::run` reports —
//! a progress bar, `metrics.jsonl` (one JSON object per step, validation and checkpoint), `loss.png` and a
//! summary. Every input is checked before the first step.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use gato_core::{Backend, GatoConfig, MatmulPrecision};
use gato_data::{Dataset, TaskWeights};
use gato_train::run::{self, Event, RunSpec, ValidationReport};
use gato_train::{checkpoint, Trainer};
use gato_transformer::GatoTransformer;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::{check_range, Result};
use crate::cli::TrainArgs;
use crate::error::CliError;
use crate::{output, plot};

static GRACEFUL: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);

/// Called by the signal handler: while a run is training, the first signal asks it to stop after the current
/// step (with a checkpoint) and returns true; otherwise false (the handler exits).
pub fn request_graceful_stop() -> bool {
    GRACEFUL.load(Ordering::SeqCst) && !STOP.swap(true, Ordering::SeqCst)
}

fn arg(flag: &'static str, detail: impl Into<String>) -> CliError {
    CliError::Argument {
        flag,
        detail: detail.into(),
    }
}

/// Episode files named by `--data`: files as given, directories expanded to their `*.safetensors` (sorted).
fn episode_files(data: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in data {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| arg("data", format!("{}: {e}", p.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "safetensors") && f.is_file())
                .collect();
            if found.is_empty() {
                return Err(arg(
                    "data",
                    format!("no episode files (*.safetensors) in {}", p.display()),
                ));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        return Err(arg("data", "no episode files given (--data DIR|FILE…)"));
    }
    Ok(files)
}

/// A flag given on resume must agree with the run being resumed.
fn same<T: PartialEq + std::fmt::Display>(
    flag: &'static str,
    given: Option<T>,
    run: T,
    at: &Path,
) -> Result<T> {
    match given {
        Some(v) if v != run => Err(arg(
            flag,
            format!(
                "{v} differs from the resumed run's {run} ({}); drop the flag to continue that run",
                at.display()
            ),
        )),
        _ => Ok(run),
    }
}

/// Metrics kept for the plot, and the file they are appended to.
struct Metrics {
    file: File,
    curves: plot::Curves,
}

impl Metrics {
    /// Open `out/metrics.jsonl`, keeping the records of steps up to `upto` (a resumed run drops what an
    /// interrupted run logged after its checkpoint).
    fn open(out: &Path, upto: usize) -> Result<Self> {
        let path = out.join("metrics.jsonl");
        let io = |e: std::io::Error| arg("out", format!("{}: {e}", path.display()));
        let old = match upto {
            0 => String::new(),
            _ => std::fs::read_to_string(&path).unwrap_or_default(),
        };
        let kept: Vec<(&str, Value)> = old
            .lines()
            .filter_map(|line| Some((line, serde_json::from_str::<Value>(line).ok()?)))
            .filter(|(_, v)| v["step"].as_u64().is_some_and(|s| s as usize <= upto))
            .collect();
        let text: String = kept.iter().map(|(line, _)| format!("{line}\n")).collect();
        std::fs::write(&path, text).map_err(io)?;
        let mut m = Metrics {
            file: OpenOptions::new().append(true).open(&path).map_err(io)?,
            curves: plot::Curves::default(),
        };
        kept.iter().for_each(|(_, v)| m.curves.remember(v));
        Ok(m)
    }

    fn log(&mut self, v: Value) -> Result<()> {
        self.curves.remember(&v);
        writeln!(self.file, "{v}").map_err(|e| arg("out", format!("metrics.jsonl: {e}")))
    }
}

pub fn run(be: &Arc<dyn Backend>, args: &TrainArgs) -> Result<()> {
    let be = be.as_ref();
    if let Some(k) = args.keep_checkpoints {
        check_range("keep-checkpoints", k, 1, usize::MAX)?;
    }
    if let Some(f) = args.validation_fraction.filter(|f| !(0.0..1.0).contains(f)) {
        return Err(arg("validation-fraction", format!("{f} is outside [0, 1)")));
    }
    // The run: resumed from a checkpoint, or new.
    let (mut trainer, spec, config, files) = match &args.resume {
        Some(from) => {
            let dir = run::latest_checkpoint(from).ok_or_else(|| {
                arg(
                    "resume",
                    format!(
                        "{}: no training checkpoint (expected {} or checkpoints/step-*/ inside)",
                        from.display(),
                        checkpoint::OPTIMIZER_FILE
                    ),
                )
            })?;
            let prev = run::read_spec(&dir)
                .map_err(|e| arg("resume", e.to_string()))?
                .ok_or_else(|| {
                    arg(
                        "resume",
                        format!(
                            "{}: no {} (not written by gato train)",
                            dir.display(),
                            checkpoint::RUN_FILE
                        ),
                    )
                })?;
            let steps = args.steps.unwrap_or(prev.steps);
            let trainer = checkpoint::load(&dir, be, steps)?;
            let spec = RunSpec {
                steps,
                batch: same("batch", args.batch, prev.batch, &dir)?,
                accumulate: same("accumulate", args.accumulate, prev.accumulate, &dir)?,
                seq_len: same("seq", args.seq, prev.seq_len, &dir)?,
                seed: same("seed", args.seed, prev.seed, &dir)?,
                eval_every: args.eval_every.unwrap_or(prev.eval_every),
                checkpoint_every: args.checkpoint_every.unwrap_or(prev.checkpoint_every),
                keep_checkpoints: args.keep_checkpoints.unwrap_or(prev.keep_checkpoints),
                validation_fraction: same(
                    "validation-fraction",
                    args.validation_fraction,
                    prev.validation_fraction,
                    &dir,
                )?,
                task_weights: same(
                    "task-weights",
                    args.task_weights.clone(),
                    prev.task_weights.clone(),
                    &dir,
                )?,
                data: prev.data.clone(),
                precision: args.precision.clone().unwrap_or(prev.precision.clone()),
            };
            let files = if args.data.is_empty() {
                spec.data.iter().map(PathBuf::from).collect()
            } else {
                episode_files(&args.data)?
            };
            let config = trainer.config().clone();
            if trainer.steps() > steps {
                return Err(arg(
                    "steps",
                    format!(
                        "{steps} is below the {} steps the checkpoint has taken",
                        trainer.steps()
                    ),
                ));
            }
            (Some(trainer), spec, config, files)
        }
        None => {
            if args.data.is_empty() {
                return Err(arg("data", "no episode files given (--data DIR|FILE…)"));
            }
            let files = episode_files(&args.data)?;
            let config = GatoConfig::from_name_or_path(&args.config)?;
            let steps = args
                .steps
                .ok_or_else(|| arg("steps", "required for a new run (--steps N)"))?;
            let spec = RunSpec {
                steps,
                batch: args.batch.unwrap_or(config.training.batch_size),
                accumulate: args.accumulate.unwrap_or(1),
                seq_len: args.seq.unwrap_or(config.token_sequence_length),
                seed: args.seed.unwrap_or(0),
                eval_every: args.eval_every.unwrap_or(100),
                checkpoint_every: args.checkpoint_every.unwrap_or(500),
                keep_checkpoints: args.keep_checkpoints.unwrap_or(2),
                validation_fraction: args.validation_fraction.unwrap_or(0.1),
                task_weights: args
                    .task_weights
                    .clone()
                    .unwrap_or_else(|| TaskWeights::Tokens.to_string()),
                data: files.iter().map(|f| f.display().to_string()).collect(),
                precision: args.precision.clone().unwrap_or_else(|| "f32".into()),
            };
            if run::latest_checkpoint(&args.out).is_some() {
                return Err(arg(
                    "out",
                    format!(
                        "{} already holds a training run; continue it with --resume {0} or choose another --out",
                        args.out.display()
                    ),
                ));
            }
            (None, spec, config, files)
        }
    };
    spec.validate().map_err(|e| match e {
        gato_train::TrainError::Options { field, detail } => CliError::Argument {
            flag: match field.as_str() {
                "steps" => "steps",
                "batch" => "batch",
                "accumulate" => "accumulate",
                "seq" => "seq",
                "task-weights" => "task-weights",
                "precision" => "precision",
                _ => "keep-checkpoints",
            },
            detail,
        },
        other => arg("train", other.to_string()),
    })?;
    if spec.seq_len > config.token_sequence_length {
        return Err(arg(
            "seq",
            format!(
                "{} is beyond the model's context of {} tokens (token_sequence_length)",
                spec.seq_len, config.token_sequence_length
            ),
        ));
    }
    // Data: every file read, validated and tokenized now, so a bad one stops the run before step 1.
    let t = Instant::now();
    let mut data_config = config.clone();
    data_config.token_sequence_length = spec.seq_len;
    let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let mut data = Dataset::from_files(
        &paths,
        &data_config,
        &args.text_tokenizer,
        spec.validation_fraction,
    )?;
    let weights: TaskWeights = spec
        .task_weights
        .parse()
        .map_err(|e: gato_data::DataError| arg("task-weights", e.to_string()))?;
    data.set_weights(&weights)
        .map_err(|e| arg("task-weights", e.to_string()))?;
    if data.tasks.iter().all(|t| t.windows() == 0) {
        return Err(arg(
            "data",
            "no training windows: every task's episodes are held out or empty",
        ));
    }
    let data_s = t.elapsed().as_secs_f64();
    std::fs::create_dir_all(&args.out)
        .map_err(|e| arg("out", format!("{}: {e}", args.out.display())))?;
    let mut trainer = match trainer.take() {
        Some(t) => t,
        None => Trainer::new(&GatoTransformer::init(be, &config, spec.seed)?, spec.steps),
    };
    let asked: MatmulPrecision = spec
        .precision
        .parse()
        .map_err(|e: gato_core::Error| arg("precision", e.to_string()))?;
    let precision = gato_train::effective_precision(be, asked);
    trainer.set_precision(precision);
    let start_step = trainer.steps();
    let comm = join_group(be, args)?;
    let rank = comm.as_ref().map_or(0, |c| c.rank());
    // Rank 0 owns --out (checkpoints, metrics, plot); another rank logs its own view under out/rank-R/.
    let log_dir = match rank {
        0 => args.out.clone(),
        r => args.out.join(format!("rank-{r}")),
    };
    std::fs::create_dir_all(&log_dir)
        .map_err(|e| arg("out", format!("{}: {e}", log_dir.display())))?;
    let mut metrics = Metrics::open(&log_dir, start_step)?;
    let total_weight: f64 = data.tasks.iter().map(|t| t.weight).sum();
    let tasks: Vec<String> = data
        .tasks
        .iter()
        .map(|t| {
            format!(
                "{} ({} train + {} held-out episodes, {} windows, {:.1}% of sequences)",
                t.name,
                t.train.len(),
                t.validation.len(),
                t.windows(),
                100.0 * t.weight / total_weight
            )
        })
        .collect();
    eprintln!(
        "gato train: {} tasks read in {data_s:.1} s: {}\n  steps {}..{} · batch {} × {} tokens · accumulate {} · seed {} · products {}{}{} · out {}",
        data.tasks.len(),
        tasks.join(", "),
        start_step,
        spec.steps,
        spec.batch,
        spec.seq_len,
        spec.accumulate,
        spec.seed,
        precision,
        if precision == asked {
            String::new()
        } else {
            format!(" ({asked} asked; the {} backend has no fast bf16 products)", be.name())
        },
        comm.as_ref().map_or(String::new(), |c| format!(
            " · rank {} of {} (NCCL)",
            c.rank(),
            c.world_size()
        )),
        args.out.display()
    );
    let bar = match rank {
        0 => ProgressBar::new(spec.steps as u64),
        _ => ProgressBar::hidden(),
    }
    .with_position(start_step as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise}, ETA {eta}]")
            .map_err(|e| arg("train", e.to_string()))?,
    );
    let png = log_dir.join("loss.png");
    let mut last_validation: Vec<ValidationReport> = Vec::new();
    let mut last_loss = f64::NAN;
    let mut tokens_total = 0usize;
    let mut seconds_total = 0.0;
    let mut failure: Option<CliError> = None;
    GRACEFUL.store(true, Ordering::SeqCst);
    let outcome = run::train(
        be,
        &mut trainer,
        &data,
        &spec,
        &args.out,
        &STOP,
        comm.as_deref(),
        &mut |event| {
            let logged = match event {
                Event::Step {
                    report,
                    tokens,
                    seconds,
                } => {
                    tokens_total += tokens;
                    seconds_total += seconds;
                    last_loss = report.loss;
                    let tps = tokens as f64 / seconds.max(1e-9);
                    bar.set_position(report.step as u64 + 1);
                    bar.set_message(format!(
                        "loss {:.4} · lr {:.2e} · {:.0} tok/s",
                        report.loss, report.lr, tps
                    ));
                    metrics.log(json!({
                        "event": "step", "step": report.step + 1, "loss": report.loss,
                        "lr": report.lr, "grad_norm": report.grad_norm, "targets": report.targets,
                        "tokens": tokens, "seconds": seconds, "tokens_per_s": tps,
                    }))
                }
                Event::Validation { step, reports } => {
                    let line: Vec<String> = reports
                        .iter()
                        .map(|r| {
                            format!("{} loss {:.4} acc {:.3}", r.task, r.loss, r.action_accuracy)
                        })
                        .collect();
                    bar.suspend(|| eprintln!("step {step}: validation: {}", line.join(" · ")));
                    last_validation = reports.to_vec();
                    reports
                        .iter()
                        .try_for_each(|r| {
                            metrics.log(json!({
                                "event": "validation", "step": step, "task": r.task, "loss": r.loss,
                                "targets": r.targets, "action_accuracy": r.action_accuracy,
                                "action_targets": r.action_targets,
                            }))
                        })
                        .and_then(|()| plot::loss_curves(&png, &metrics.curves))
                }
                Event::Checkpoint { step, dir } => metrics.log(json!({
                    "event": "checkpoint", "step": step, "dir": dir.display().to_string(),
                })),
            };
            if let (Err(e), None) = (logged, &failure) {
                failure = Some(e);
            }
        },
    );
    GRACEFUL.store(false, Ordering::SeqCst);
    bar.finish_and_clear();
    let outcome = outcome?;
    if let Some(e) = failure {
        return Err(e);
    }
    plot::loss_curves(&png, &metrics.curves)?;
    let ckpt = outcome.checkpoint.as_ref().map(|p| p.display().to_string());
    let summary = json!({
        "steps": outcome.steps,
        "interrupted": outcome.interrupted,
        "last_loss": last_loss,
        "tokens_per_s": tokens_total as f64 / seconds_total.max(1e-9),
        "validation": last_validation,
        "checkpoint": ckpt,
        "metrics": log_dir.join("metrics.jsonl").display().to_string(),
        "plot": png.display().to_string(),
    });
    if args.json {
        output::json(&summary);
        return match outcome.interrupted {
            true => Err(CliError::Interrupted(format!(
                "interrupted after {} steps",
                outcome.steps
            ))),
            false => Ok(()),
        };
    }
    let mut s = format!(
        "{} after {} steps (this run: {} steps, {:.0} tokens/s); last training loss {:.4}\n",
        if outcome.interrupted {
            "interrupted"
        } else {
            "trained"
        },
        outcome.steps,
        outcome.steps - start_step,
        tokens_total as f64 / seconds_total.max(1e-9),
        last_loss
    );
    if !last_validation.is_empty() {
        s.push_str(&format!(
            "{:<28} {:>10} {:>10} {:>16}\n",
            "task (held out)", "loss", "targets", "action accuracy"
        ));
        for r in &last_validation {
            s.push_str(&format!(
                "{:<28} {:>10.4} {:>10} {:>9.3} of {:<5}\n",
                r.task, r.loss, r.targets, r.action_accuracy, r.action_targets
            ));
        }
    }
    s.push_str(&format!(
        "checkpoint {}\nmetrics    {}\nplot       {}\n",
        ckpt.unwrap_or_else(|| "(none)".into()),
        log_dir.join("metrics.jsonl").display(),
        png.display()
    ));
    output::print(&s);
    if outcome.interrupted {
        return Err(CliError::Interrupted(format!(
            "interrupted after {} steps; continue with --resume {}",
            outcome.steps,
            args.out.display()
        )));
    }
    Ok(())
}

/// This process's data-parallel group (`--world-size`, `--rank`, `--rendezvous`), or `None` for a run of one.
fn join_group(
    be: &dyn Backend,
    args: &crate::cli::TrainArgs,
) -> Result<Option<Arc<dyn gato_train::Communicator>>, CliError> {
    let (Some(world), Some(file)) = (args.world_size, args.rendezvous.as_ref()) else {
        return Ok(None);
    };
    let rank = args.rank.unwrap_or(0);
    if world == 0 || rank >= world {
        return Err(arg(
            "rank",
            format!("{rank} is out of range: allowed 0..{world} (below --world-size)"),
        ));
    }
    // Rank 0 makes the group id first, so a backend without collectives fails before any file is written.
    let made = match rank {
        0 => Some(
            be.collective_id()
                .map_err(|e| arg("world-size", e.to_string()))?,
        ),
        _ => None,
    };
    let not_before = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
    let id = gato_train::rendezvous(
        file,
        rank,
        || Ok(made.unwrap_or_default()),
        not_before,
        std::time::Duration::from_secs(300),
    )
    .map_err(|e| arg("rendezvous", e.to_string()))?;
    let comm = be
        .communicator(&id, rank, world)
        .map_err(|e| arg("world-size", e.to_string()))?;
    Ok(Some(comm))
}
