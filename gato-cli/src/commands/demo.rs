//! `gato demo`: the shipped generalist (or an untrained preset) on the bundled real episodes, with the time of
//! every stage and its agreement with the expert; then, where the simulators are set up, playing them live.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use gato_agent::bridge;
use gato_agent::{evaluate_offline, Agent};
use gato_core::{Backend, DType, GatoConfig, MatmulPrecision};
use gato_data::EpisodeFile;
use gato_tokenizers::to_batch;
use gato_transformer::{
    checkpoint, count_parameters, ActionSampler, GatoTransformer, Sampling, WindowPolicy,
};

use clap::Parser;

use super::eval::in_repo;
use super::Result;
use crate::cli::EvalArgs;
use crate::error::CliError;
use crate::output::{self, human};

/// What `gato demo` runs.
pub struct DemoArgs<'a> {
    /// The checkpoint (default: the shipped weights).
    pub checkpoint: Option<&'a Path>,
    /// An untrained preset instead.
    pub config: Option<&'a str>,
    /// Directory of the bundled episode files.
    pub episodes: &'a Path,
    /// Timesteps acted per environment on the bundled episodes.
    pub act_steps: usize,
    /// Episodes per environment in the live simulators (0: none).
    pub live_episodes: usize,
}

/// The shipped generalist (issue 18): `gato train` on the five recorded domains, exported as bf16.
pub const SHIPPED: &str = "weights/gato-nano";

pub fn run(
    backend: impl Fn() -> gato_core::Result<Arc<dyn Backend>>,
    args: &DemoArgs,
    weights: DType,
    precision: MatmulPrecision,
) -> Result<()> {
    let be_arc = backend()?;
    let be = be_arc.as_ref();
    let dir = in_repo(args.episodes);
    let act_steps = args.act_steps;
    let t = Instant::now();
    let (mut model, origin) = match (args.config, args.checkpoint) {
        (Some(config), _) => {
            let config = GatoConfig::from_name_or_path(config)?;
            (
                GatoTransformer::init(be, &config, 0)?,
                "untrained, initialised from seed 0".to_string(),
            )
        }
        (None, ck) => {
            let path = in_repo(ck.unwrap_or(Path::new(SHIPPED)));
            let model = checkpoint::load(&path, be).map_err(|e| CliError::Argument {
                flag: "checkpoint",
                detail: format!(
                    "{e} (run from the repository root, pass --checkpoint DIR, or --config small for an untrained model)"
                ),
            })?;
            (model, format!("trained, loaded from {}", path.display()))
        }
    };
    let trained = args.config.is_none();
    let config = model.config().clone();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| CliError::Argument {
            flag: "episodes",
            detail: format!(
                "{}: {e} (run from the repository root, or pass --episodes DIR)",
                dir.display()
            ),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    let mut s = format!(
        "gato demo — backend {} ({})\n",
        be.name(),
        be.device_description()
    );
    model.cast_block_weights(be, weights)?;
    model.pack_block_weights(be, precision)?;
    let n = count_parameters(&config)?.total;
    s += &format!(
        "model: {} blocks, width {}, {} parameters ({}), {origin} in {:.2} s\n\n",
        config.num_transformer_blocks,
        config.layer_width,
        n,
        human(n),
        t.elapsed().as_secs_f64()
    );
    s += &format!(
        "{:<24} {:>4} {:>7} {:>9} {:>10} {:>11} {:>9} {:>11}\n",
        "environment",
        "eps",
        "tokens",
        "read+tok",
        "forward",
        "loss (nats)",
        "act/step",
        "agreement"
    );
    output::print(&s);
    for path in &files {
        let t = Instant::now();
        let file = EpisodeFile::open(path)?;
        let builder = file.builder(&config, "bytes")?;
        let (seq, _) = file
            .tokenize(0, &builder)?
            .first_window(config.token_sequence_length)?;
        let batch = to_batch(&[&seq]);
        let tok_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let loss = model.loss(be, &batch)?;
        be.synchronize()?;
        let fwd_s = t.elapsed().as_secs_f64();
        // Episode after episode (each from a fresh context) until `act_steps` timesteps are acted on.
        let sampler = ActionSampler::new(Sampling::Argmax, 0)?;
        let mut agent = Agent::new(&model, &builder, sampler, WindowPolicy::Rebuild);
        let mut results = Vec::new();
        for e in 0..file.len() {
            if results.len() >= act_steps {
                break;
            }
            let mut steps = file.timesteps(e)?;
            steps.truncate(act_steps - results.len());
            agent.reset(be, None)?;
            results.extend(evaluate_offline(&mut agent, be, &steps, &mut ())?);
        }
        let agree = results.iter().filter(|r| r.agrees()).count();
        let ms = results.iter().map(|r| r.seconds).sum::<f64>() / results.len().max(1) as f64 * 1e3;
        output::print(&format!(
            "{:<24} {:>4} {:>7} {:>7.1}ms {:>8.1}ms {:>11.3} {:>7.1}ms {:>7}/{}\n",
            file.env_id(),
            file.len(),
            batch.seq_len,
            tok_s * 1e3,
            fwd_s * 1e3,
            loss.loss,
            ms,
            agree,
            results.len()
        ));
    }
    if !trained {
        output::print(
            "\nAn untrained model: the loss is near ln(33025) = 10.4 and agreement is chance.\n",
        );
        return Ok(());
    }
    output::print(
        "\nAgreement: the model's most likely action token against the recorded expert's, step by step on the \
         bundled episodes (short samples of the training experts), with no prompt.\n",
    );
    if args.live_episodes == 0 {
        return Ok(());
    }
    if bridge::default_python().is_none() {
        output::print(&format!(
            "\nThe live simulators are not set up here: `{}` (once, ~1 min) and run the demo again to watch it \
             play them.\n",
            bridge::SETUP_COMMAND
        ));
        return Ok(());
    }
    output::print(&format!(
        "\nIn the live simulators ({} episodes per environment, expert-prompted, at most 500 steps each):\n",
        args.live_episodes
    ));
    let ck = in_repo(args.checkpoint.unwrap_or(Path::new(SHIPPED)));
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(args.live_episodes);
    let eval_args = LiveArgs::try_parse_from([
        "eval".to_string(),
        "--checkpoint".into(),
        ck.display().to_string(),
        "--episodes".into(),
        args.live_episodes.to_string(),
        "--workers".into(),
        workers.to_string(),
        "--max-steps".into(),
        "500".into(),
        "--prompt-episodes".into(),
        dir.display().to_string(),
    ])
    .map_err(|e| CliError::Argument {
        flag: "demo",
        detail: e.to_string(),
    })?;
    let be_once = be_arc.clone();
    super::eval::run(
        move || Ok(be_once.clone()),
        &eval_args.eval,
        weights,
        precision,
    )
}

/// `gato eval`'s arguments, parsed from the demo's own command line so that every default is eval's.
#[derive(Parser)]
struct LiveArgs {
    #[command(flatten)]
    eval: EvalArgs,
}
