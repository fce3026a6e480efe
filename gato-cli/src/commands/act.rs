//! `gato act`: offline evaluation — sample an action at every step of an episode and compare with the expert.

use std::sync::Arc;

use gato_agent::{evaluate_offline, prompt_from, Agent};
use gato_core::{Backend, DType, MatmulPrecision};
use gato_data::EpisodeFile;
use gato_transformer::{checkpoint, ActionSampler, Sampling, WindowPolicy};
use serde_json::json;

use super::Result;
use crate::cli::ActArgs;
use crate::output;
use crate::output::show;

pub fn run(
    be: &Arc<dyn Backend>,
    args: &ActArgs,
    weights: DType,
    precision: MatmulPrecision,
) -> Result<()> {
    let be = be.as_ref();
    let window: WindowPolicy = args.window.parse()?;
    let mut model = checkpoint::load(&args.checkpoint, be)?;
    model.cast_block_weights(be, weights)?;
    // Acting multiplies by few rows at a time: lay the weights out for that once.
    model.pack_block_weights(be, precision)?;
    let file = EpisodeFile::open(&args.episode)?;
    let builder = file.builder(model.config(), &args.text_tokenizer)?;
    let mut steps = file.timesteps(args.episode_index)?;
    if let Some(n) = args.max_steps {
        steps.truncate(n);
    }
    let prompt = match &args.prompt {
        Some(p) => {
            let demo_file = EpisodeFile::open(p)?;
            let demo = demo_file.tokenize(0, &builder)?;
            Some(prompt_from(&demo, model.config().token_sequence_length / 2))
        }
        None => None,
    };
    let sampling = if args.argmax {
        Sampling::Argmax
    } else {
        Sampling::Temperature(args.temperature)
    };
    let sampler = ActionSampler::new(sampling, args.seed)?;
    let mut agent = Agent::new(&model, &builder, sampler, window);
    agent.reset(be, prompt.as_ref())?;
    let results = evaluate_offline(&mut agent, be, &steps, &mut ())?;
    let agree = results.iter().filter(|r| r.agrees()).count();
    let mean_ms =
        results.iter().map(|r| r.seconds).sum::<f64>() / results.len().max(1) as f64 * 1e3;
    if args.format.json {
        let rows: Vec<_> = results
            .iter()
            .map(|r| json!({"timestep": r.timestep, "tokens": r.tokens, "expert_tokens": r.expert_tokens, "agrees": r.agrees(), "ms": r.seconds * 1e3}))
            .collect();
        output::json(
            &json!({"env": file.env_id(), "steps": rows, "agreement": agree as f64 / results.len().max(1) as f64, "mean_ms_per_step": mean_ms}),
        );
        return Ok(());
    }
    let mut s = format!(
        "{} episode {} — {} steps, prompt {} tokens\n",
        file.env_id(),
        args.episode_index,
        results.len(),
        prompt.as_ref().map_or(0, |p| p.len())
    );
    s += &format!(
        "{:>5}  {:<36}  {:<36}  {:>5}  {:>8}\n",
        "t", "sampled", "expert", "same", "ms"
    );
    for r in &results {
        let fmt = |m: &std::collections::BTreeMap<String, gato_tokenizers::FieldValue>| {
            m.values().map(show).collect::<Vec<_>>().join(" ")
        };
        s += &format!(
            "{:>5}  {:<36}  {:<36}  {:>5}  {:>8.2}\n",
            r.timestep,
            fmt(&r.action),
            fmt(&r.expert),
            if r.agrees() { "yes" } else { "no" },
            r.seconds * 1e3
        );
    }
    s += &format!(
        "agreement with the expert: {agree}/{} steps ({:.1}%); mean {mean_ms:.2} ms per step\n",
        results.len(),
        100.0 * agree as f64 / results.len().max(1) as f64
    );
    output::print(&s);
    Ok(())
}
