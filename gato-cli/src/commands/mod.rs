//! One short function per subcommand; each calls library crates and formats the result.

mod act;
mod backends;
mod bench;
mod bench_train;
mod check;
mod config;
mod demo;
mod episodes;
mod eval;
mod export;
mod forward;
mod info;
mod init;
mod tokenize;
mod tokenizers;
mod train;

pub use train::request_graceful_stop;

use std::sync::Arc;

use gato_core::{Backend, BackendOptions, MatmulPrecision};

pub use crate::error::Result;

use crate::cli::{Cli, Command};
use crate::error::CliError;
use crate::output;

/// `Err` naming `--flag`, the value and the allowed range unless `min ≤ value ≤ max`: no numeric argument is ever
/// clamped silently.
pub fn check_range(flag: &'static str, value: usize, min: usize, max: usize) -> Result<()> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    let allowed = if max == usize::MAX {
        format!("at least {min}")
    } else {
        format!("{min} to {max}")
    };
    Err(crate::error::CliError::Argument {
        flag,
        detail: format!("{value} is out of range: allowed {allowed}"),
    })
}

/// Validate the global options, then run the subcommand.
pub fn dispatch(cli: &Cli) -> Result<()> {
    // An unknown backend name is rejected whatever the subcommand, with the list of valid names.
    gato_core::backend_entry(&cli.backend)?;
    let weights = init::parse_dtype_flag("weights", &cli.weights)?;
    let precision: MatmulPrecision = cli.matmul_precision.parse()?;
    // Numeric arguments whose bounds do not depend on a model or a file.
    match &cli.command {
        Command::Bench {
            reps, act_steps, ..
        } => {
            check_range("reps", *reps, 1, usize::MAX)?;
            check_range("act-steps", *act_steps, 1, usize::MAX)?;
        }
        Command::Forward(args) => check_range("reps", args.reps, 1, usize::MAX)?,
        Command::Act(args) => {
            if let Some(n) = args.max_steps {
                check_range("max-steps", n, 1, usize::MAX)?;
            }
        }
        Command::Demo { steps, .. } => check_range("steps", *steps, 1, usize::MAX)?,
        Command::Eval(args) => {
            check_range("episodes", args.episodes, 1, usize::MAX)?;
            check_range("workers", args.workers, 1, 256)?;
            if let Some(n) = args.max_steps {
                check_range("max-steps", n, 1, usize::MAX)?;
            }
        }
        _ => {}
    }
    match &cli.command {
        Command::Backends { format } => Ok(backends::run(format.json)?),
        Command::Info { config, format } => Ok(info::run(config, format.json)?),
        Command::Check { size, format } => Ok(check::run(&backend(cli)?, *size, format.json)?),
        Command::Config { config, out } => config::run(config, out.as_deref()),
        Command::Tokenize(args) => tokenize::run(args),
        Command::Bench {
            config,
            tokens,
            reps,
            train: true,
            format,
            ..
        } => bench_train::run(
            &backend(cli)?,
            config,
            *tokens,
            *reps,
            cli.threads,
            precision,
            format.json,
        ),
        Command::Bench {
            config,
            episode,
            tokens,
            reps,
            act_steps,
            format,
            ..
        } => bench::run(
            &backend(cli)?,
            config,
            episode,
            *tokens,
            *reps,
            *act_steps,
            weights,
            cli.threads,
            format.json,
        ),
        Command::Init {
            config,
            seed,
            out,
            dtype,
            force,
        } => init::run(&backend(cli)?, config, *seed, out, dtype, *force),
        Command::Forward(args) => forward::run(&backend(cli)?, args, weights),
        Command::Act(args) => act::run(&backend(cli)?, args, weights, precision),
        Command::Demo {
            checkpoint,
            config,
            episodes,
            steps,
            live_episodes,
        } => demo::run(
            || backend(cli),
            &demo::DemoArgs {
                checkpoint: checkpoint.as_deref(),
                config: config.as_deref(),
                episodes,
                act_steps: *steps,
                live_episodes: *live_episodes,
            },
            weights,
            precision,
        ),
        Command::Plot { run, out } => {
            let metrics = run.join("metrics.jsonl");
            let text = std::fs::read_to_string(&metrics).map_err(|e| CliError::Argument {
                flag: "run",
                detail: format!("{}: {e}", metrics.display()),
            })?;
            let curves = crate::plot::Curves::from_jsonl(&text);
            let png = out.clone().unwrap_or_else(|| run.join("loss.png"));
            crate::plot::loss_curves(&png, &curves)?;
            output::print(&format!(
                "{}: {} steps, {} validations of {} tasks\n",
                png.display(),
                curves.train.len(),
                curves.validation.values().map(Vec::len).max().unwrap_or(0),
                curves.validation.len()
            ));
            Ok(())
        }
        Command::Export {
            checkpoint,
            out,
            dtype,
            force,
        } => export::run(&backend(cli)?, checkpoint, out, dtype, *force),
        Command::Episodes { files, format } => episodes::run(files, format.json),
        Command::Tokenizers { format } => Ok(tokenizers::run(format.json)?),
        Command::Train(args) => train::run(&backend(cli)?, args),
        Command::Eval(args) => eval::run(|| backend(cli), args, weights, precision),
    }
}

/// The backend selected with `--backend`, probed and created (unavailable → "CUDA backend unavailable: …").
fn backend(cli: &Cli) -> gato_core::Result<Arc<dyn Backend>> {
    gato_core::create_backend(
        &cli.backend,
        &BackendOptions {
            threads: cli.threads,
            device: cli.device,
        },
    )
}
