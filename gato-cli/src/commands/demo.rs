//! `gato demo`: the whole pipeline on the bundled real episodes, with the time of every stage.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use gato_agent::{evaluate_offline, Agent};
use gato_core::{Backend, DType, GatoConfig, MatmulPrecision};
use gato_data::EpisodeFile;
use gato_tokenizers::to_batch;
use gato_transformer::{count_parameters, ActionSampler, GatoTransformer, Sampling, WindowPolicy};

use super::Result;
use crate::error::CliError;
use crate::output::{self, human};

pub fn run(
    be: &Arc<dyn Backend>,
    config: &str,
    dir: &Path,
    act_steps: usize,
    weights: DType,
    precision: MatmulPrecision,
) -> Result<()> {
    let be = be.as_ref();
    let config = GatoConfig::from_name_or_path(config)?;
    let mut files: Vec<_> = std::fs::read_dir(dir)
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
    let t = Instant::now();
    let mut model = GatoTransformer::init(be, &config, 0)?;
    model.cast_block_weights(be, weights)?;
    model.pack_block_weights(be, precision)?;
    let n = count_parameters(&config)?.total;
    s += &format!(
        "model: {} blocks, width {}, {} parameters ({}), initialised from seed 0 in {:.2} s\n\n",
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
        let mut steps = file.timesteps(0)?;
        steps.truncate(act_steps);
        let sampler = ActionSampler::new(Sampling::Argmax, 0)?;
        let mut agent = Agent::new(&model, &builder, sampler, WindowPolicy::Rebuild);
        agent.reset(be, None)?;
        let results = evaluate_offline(&mut agent, be, &steps, &mut ())?;
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
    output::print(
        "\nAn untrained model: the loss is near ln(33025) = 10.4 and agreement is chance. Training is future work;\n\
         `gato init`, `gato forward` and `gato act` run the same stages on a checkpoint of your own.\n",
    );
    Ok(())
}
