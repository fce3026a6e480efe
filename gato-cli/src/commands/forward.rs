//! `gato forward`: the full sequence of one episode through the model; prints the masked loss and timing, and
//! optionally dumps the logits and token ids for another tool to compare.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use gato_core::{Backend, DType};
use gato_data::EpisodeFile;
use gato_tokenizers::to_batch;
use gato_transformer::{checkpoint, masked_cross_entropy};
use serde_json::json;

use super::Result;
use crate::cli::ForwardArgs;
use crate::error::CliError;
use crate::output;

pub fn run(be: &Arc<dyn Backend>, args: &ForwardArgs, weights: DType) -> Result<()> {
    let be = be.as_ref();
    let t = Instant::now();
    let mut model = checkpoint::load(&args.checkpoint, be)?;
    model.cast_block_weights(be, weights)?;
    let load_s = t.elapsed().as_secs_f64();
    let file = EpisodeFile::open(&args.episode)?;
    let builder = file.builder(model.config(), &args.text_tokenizer)?;
    let t = Instant::now();
    // The first window of whole timesteps that fits the context (SPEC §4).
    let (seq, truncated) = file
        .tokenize(args.episode_index, &builder)?
        .first_window(model.config().token_sequence_length)?;
    let batch = to_batch(&[&seq]);
    let tok_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    // Without a dump, logits are computed only where the next token is a target.
    let (loss, logits) = match &args.dump_logits {
        Some(_) => {
            let logits = model.forward(be, &batch)?;
            (masked_cross_entropy(be, &logits, &batch)?, Some(logits))
        }
        None => (model.loss(be, &batch)?, None),
    };
    be.synchronize()?;
    let fwd_s = t.elapsed().as_secs_f64();
    if let (Some(path), Some(logits)) = (&args.dump_logits, &logits) {
        let values = be.download(logits)?.into_f32().unwrap_or_default();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let ids: Vec<u8> = batch.ids.iter().flat_map(|v| v.to_le_bytes()).collect();
        let vocab = logits.dims()[2];
        let dump_err = |e: safetensors::SafeTensorError| CliError::Argument {
            flag: "dump-logits",
            detail: e.to_string(),
        };
        let views = vec![
            (
                "logits".to_string(),
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    vec![batch.seq_len, vocab],
                    &bytes,
                )
                .map_err(dump_err)?,
            ),
            (
                "token_ids".to_string(),
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::U32,
                    vec![batch.seq_len],
                    &ids,
                )
                .map_err(dump_err)?,
            ),
        ];
        let meta: HashMap<String, String> = [(
            "note".to_string(),
            "image positions hold patch indices in token_ids".to_string(),
        )]
        .into();
        safetensors::serialize_to_file(views, Some(meta), path).map_err(dump_err)?;
    }
    if args.format.json {
        output::json(&json!({
            "tokens": batch.seq_len, "loss": loss.loss, "targets": loss.targets, "truncated_to_window": truncated,
            "seconds": {"load": load_s, "tokenize": tok_s, "forward": fwd_s},
        }));
    } else {
        output::print(&format!(
            "{} episode {}: {} tokens{}\nmasked loss {:.4} nats over {} targets (text and action tokens)\nload {:.2} s, tokenize {:.3} s, forward {:.3} s ({:.0} tokens/s)\n",
            file.env_id(),
            args.episode_index,
            batch.seq_len,
            if truncated { " (first window of whole timesteps)" } else { "" },
            loss.loss,
            loss.targets,
            load_s,
            tok_s,
            fwd_s,
            batch.seq_len as f64 / fwd_s
        ));
    }
    Ok(())
}
