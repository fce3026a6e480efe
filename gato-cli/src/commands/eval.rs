//! `gato eval`: play the live simulators through the Python bridge and score each environment — mean return ±
//! std, success rate, the expert-normalised score against `data/references.json`, env steps/s, the split of wall
//! time between the player and the simulator, and the player's time per step before and after the context window
//! fills.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gato_agent::bridge::{self, PythonWorker, WorkerOptions};
use gato_agent::{
    evaluate, prompt_from, EpisodeResult, EvalPlan, Policy, Reference, References, Summary,
};
use gato_core::{Backend, DType, MatmulPrecision};
use gato_data::EpisodeFile;
use gato_tokenizers::SequenceBuilder;
use gato_transformer::{checkpoint, ActionSampler, Sampling, WindowPolicy};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::Result;
use crate::cli::EvalArgs;
use crate::error::CliError;
use crate::output;

/// The environments `--env all` plays, as the recorder names them.
pub const ENVS: [&str; 5] = ["cartpole", "pendulum", "babyai", "breakout", "metaworld"];

fn arg(flag: &'static str, detail: impl Into<String>) -> CliError {
    CliError::Argument {
        flag,
        detail: detail.into(),
    }
}

/// A path given relative to the repository: as given when it exists here, else under the checkout this binary
/// was built from.
pub(crate) fn in_repo(p: &Path) -> PathBuf {
    if p.exists() || p.is_absolute() {
        return p.to_path_buf();
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p);
    if built.exists() {
        built
    } else {
        p.to_path_buf()
    }
}

/// Kills this command's workers and removes their unpacked sources when the command ends, however it ends.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        bridge::kill_all_workers();
    }
}

pub fn run(
    backend: impl Fn() -> gato_core::Result<Arc<dyn Backend>>,
    args: &EvalArgs,
    weights: DType,
    precision: MatmulPrecision,
) -> Result<()> {
    let _cleanup = Cleanup;
    let envs: Vec<String> = if args.env == "all" {
        ENVS.iter().map(|s| s.to_string()).collect()
    } else {
        args.env.split(',').map(|s| s.trim().to_string()).collect()
    };
    for e in &envs {
        if !ENVS.contains(&e.as_str()) && e != "mock" {
            return Err(arg(
                "env",
                format!(
                    "unknown environment `{e}`: choose from {}, or all",
                    ENVS.join(", ")
                ),
            ));
        }
    }
    if !(args.step_timeout.is_finite() && args.step_timeout > 0.0) {
        return Err(arg(
            "step-timeout",
            format!("{} must be a positive number of seconds", args.step_timeout),
        ));
    }
    let window: WindowPolicy = args.window.parse()?;
    let sampling = if args.argmax {
        Sampling::Argmax
    } else {
        Sampling::Temperature(args.temperature)
    };
    // The sampler is made per episode in the workers; its own check runs here once, before any worker starts.
    ActionSampler::new(sampling, args.seed)?;
    let prompted = match args.prompt.as_str() {
        "expert" => true,
        "none" => false,
        other => return Err(arg("prompt", format!("`{other}`: expected expert or none"))),
    };
    let python = args.python.clone().or_else(bridge::default_python).ok_or_else(|| {
        arg(
            "python",
            format!(
                "no Python with the simulators found ($GATO_PYTHON, .cache/venv-record/bin/python); set them up \
                 with `{}` from the repository root, or pass --python",
                bridge::SETUP_COMMAND
            ),
        )
    })?;
    let refs_path = in_repo(
        args.references
            .as_deref()
            .unwrap_or(Path::new("data/references.json")),
    );
    let references = match References::load(&refs_path) {
        Ok(r) => Some(r),
        Err(e) if args.references.is_some() => return Err(e.into()),
        Err(_) => None,
    };
    // The model, when it plays.
    let (be, model) = match args.policy.as_str() {
        "model" => {
            let ck = args.checkpoint.as_ref().ok_or_else(|| {
                arg(
                    "checkpoint",
                    "required with --policy model (or use --policy expert|random)",
                )
            })?;
            let be = backend()?;
            let mut model = checkpoint::load(ck, be.as_ref())?;
            model.cast_block_weights(be.as_ref(), weights)?;
            model.pack_block_weights(be.as_ref(), precision)?;
            (Some(be), Some(model))
        }
        "expert" | "random" => (None, None),
        other => {
            return Err(arg(
                "policy",
                format!("`{other}`: expected model, expert or random"),
            ))
        }
    };
    if let Some(dir) = &args.video {
        std::fs::create_dir_all(dir)
            .map_err(|e| arg("video", format!("{}: {e}", dir.display())))?;
    }
    let mut rows = Vec::new();
    for name in &envs {
        let opts = WorkerOptions {
            seed: args.seed,
            render: args.video.is_some(),
            timeout: Duration::from_secs_f64(args.step_timeout),
            ..WorkerOptions::new(&python, name.as_str())
        };
        // The first worker starts here, so a missing package stops the command with one error.
        let first = PythonWorker::spawn(&opts)?;
        let fields = first.fields().to_vec();
        let env_id = first.env_id().to_string();
        let spec = gato_data::env_spec(&fields, &args.text_tokenizer);
        let builder = match &model {
            Some(m) => Some(SequenceBuilder::new(m.config(), &spec)?),
            None => None,
        };
        let prompt = match (&model, &builder, prompted) {
            (Some(m), Some(b), true) => {
                let file = in_repo(&args.prompt_episodes.join(format!("{name}.safetensors")));
                let demo = EpisodeFile::open(&file).map_err(|e| {
                    arg(
                        "prompt-episodes",
                        format!(
                            "{e}; record one with tools/record/record.py or pass --prompt none"
                        ),
                    )
                })?;
                Some(prompt_from(
                    &demo.tokenize(0, b)?,
                    m.config().token_sequence_length / 2,
                ))
            }
            _ => None,
        };
        let policy = match (&model, &builder, &be) {
            (Some(model), Some(builder), Some(be)) => Policy::Model {
                model,
                builder,
                be: be.as_ref(),
                sampling,
                window,
                prompt: prompt.as_ref(),
            },
            _ if args.policy == "expert" => Policy::Expert,
            _ => Policy::Random(spec.actions.clone()),
        };
        let plan = EvalPlan {
            episodes: args.episodes,
            workers: args.workers,
            seed: args.seed,
            max_steps: args.max_steps.unwrap_or(usize::MAX),
            frames_of_first: args.video.is_some(),
        };
        let spare = Mutex::new(Some(first));
        let new_env = || -> gato_agent::Result<PythonWorker> {
            match spare.lock().ok().and_then(|mut s| s.take()) {
                Some(w) => Ok(w),
                None => PythonWorker::spawn(&opts),
            }
        };
        let bar = if args.format.json {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(args.episodes as u64)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>10} {bar:30} {pos}/{len} episodes {msg} [{elapsed_precise}]",
            )
            .map_err(|e| arg("eval", e.to_string()))?,
        );
        bar.set_prefix(name.clone());
        let returns = Mutex::new(Vec::new());
        let on_done = |r: &EpisodeResult| {
            if let Ok(o) = &r.outcome {
                if let Ok(mut v) = returns.lock() {
                    v.push(o.report.episode_return);
                    let (m, _) = gato_agent::mean_std(&v);
                    bar.set_message(format!("mean return {m:.1}"));
                }
            } else if let Err(e) = &r.outcome {
                bar.println(format!(
                    "{name}: episode {} (seed {}) failed: {e}",
                    r.index, r.seed
                ));
            }
            bar.inc(1);
        };
        let t = Instant::now();
        let results = evaluate(&plan, &policy, &new_env, &on_done);
        let wall = t.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let summary = Summary::of(&results);
        let mut video = None;
        if let Some(dir) = &args.video {
            let first = results.first().and_then(|r| r.outcome.as_ref().ok());
            let frames = first.map(|o| o.frames.clone()).unwrap_or_default();
            video = Some(if frames.is_empty() {
                Err(format!(
                    "no frames: the worker could not render this environment headless here ({})",
                    first
                        .and_then(|o| o.render_note.clone())
                        .unwrap_or_else(|| "episode 0 failed".into())
                ))
            } else {
                let path = dir.join(format!("{name}.gif"));
                crate::gif::write(&path, &frames).map(|()| path.display().to_string())
            });
        }
        rows.push(Row {
            name: name.clone(),
            env_id,
            summary,
            reference: references
                .as_ref()
                .and_then(|r| r.envs.get(name.as_str()))
                .cloned(),
            wall,
            video,
        });
    }
    report(
        args,
        &rows,
        references.as_ref().map(|_| refs_path.as_path()),
    );
    Ok(())
}

struct Row {
    name: String,
    env_id: String,
    summary: Summary,
    reference: Option<Reference>,
    wall: f64,
    video: Option<std::result::Result<String, String>>,
}

fn ms(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.1}"))
}

fn report(args: &EvalArgs, rows: &[Row], refs: Option<&Path>) {
    let refs_note = refs.map_or("none found (no normalised score)".to_string(), |p| {
        p.display().to_string()
    });
    if args.format.json {
        let envs: Vec<Value> = rows
            .iter()
            .map(|r| {
                let s = &r.summary;
                let norm = r.reference.as_ref().and_then(|x| x.normalise(s.mean_return));
                let spread = r.reference.as_ref().and_then(|x| x.normalise_spread(s.std_return));
                json!({
                    "env": r.name, "env_id": r.env_id, "episodes": s.episodes,
                    "failures": s.failures.iter().map(|(i, e)| json!({"episode": i, "reason": e})).collect::<Vec<_>>(),
                    "mean_return": s.mean_return, "std_return": s.std_return, "success_rate": s.success_rate,
                    "normalised_score": norm, "normalised_std": spread,
                    "random_return": r.reference.as_ref().map(|x| x.random.mean),
                    "expert_return": r.reference.as_ref().map(|x| x.expert.mean),
                    "steps": s.steps, "wall_seconds": r.wall, "env_steps_per_second": s.steps as f64 / r.wall,
                    "player_seconds": s.player_seconds, "env_seconds": s.env_seconds,
                    "ms_per_step_before_window_full": s.before_full.mean_ms(),
                    "ms_per_step_after_window_full": s.after_full.mean_ms(),
                    "video": r.video.as_ref().map(|v| match v { Ok(p) => json!({"file": p}), Err(e) => json!({"error": e}) }),
                })
            })
            .collect();
        output::json(
            &json!({"policy": args.policy, "prompt": args.prompt, "references": refs_note, "envs": envs}),
        );
        return;
    }
    let mut s = format!(
        "policy {}{}, {} episodes per environment from seed {}, {} worker(s); references: {refs_note}\n",
        args.policy,
        if args.policy == "model" { format!(" (prompt {}, window {})", args.prompt, args.window) } else { String::new() },
        args.episodes,
        args.seed,
        args.workers
    );
    s += &format!(
        "{:<10} {:>8} {:>18} {:>8} {:>16} {:>17} {:>9} {:>13} {:>16}\n",
        "env",
        "episodes",
        "return (mean ± std)",
        "success",
        "normalised",
        "random / expert",
        "steps/s",
        "player / sim",
        "ms/step (<|>full)"
    );
    for r in rows {
        let m = &r.summary;
        let norm = r
            .reference
            .as_ref()
            .and_then(|x| x.normalise(m.mean_return));
        let spread = r
            .reference
            .as_ref()
            .and_then(|x| x.normalise_spread(m.std_return));
        let total = (m.player_seconds + m.env_seconds).max(1e-12);
        s += &format!(
            "{:<10} {:>8} {:>18} {:>8} {:>16} {:>17} {:>9.1} {:>13} {:>16}\n",
            r.name,
            if m.failures.is_empty() {
                m.episodes.to_string()
            } else {
                format!("{}+{}F", m.episodes, m.failures.len())
            },
            format!("{:.1} ± {:.1}", m.mean_return, m.std_return),
            m.success_rate
                .map_or("-".into(), |x| format!("{:.0}%", 100.0 * x)),
            norm.map_or("-".into(), |n| format!(
                "{n:.2} ± {:.2}",
                spread.unwrap_or(0.0)
            )),
            r.reference.as_ref().map_or("-".into(), |x| format!(
                "{:.1} / {:.1}",
                x.random.mean, x.expert.mean
            )),
            m.steps as f64 / r.wall,
            format!(
                "{:.0}% / {:.0}%",
                100.0 * m.player_seconds / total,
                100.0 * m.env_seconds / total
            ),
            format!(
                "{} | {}",
                ms(m.before_full.mean_ms()),
                ms(m.after_full.mean_ms())
            ),
        );
    }
    for r in rows {
        for (i, e) in &r.summary.failures {
            s += &format!("{}: episode {i} failed: {e}\n", r.name);
        }
        match &r.video {
            Some(Ok(p)) => s += &format!("{}: video {p}\n", r.name),
            Some(Err(e)) => s += &format!("{}: no video: {e}\n", r.name),
            None => {}
        }
    }
    output::print(&s);
}
