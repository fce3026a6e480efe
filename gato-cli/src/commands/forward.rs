//! `gato forward`: the full sequence of one episode through the model; prints the masked loss and timing, and
//! optionally dumps the logits and token ids for another tool to compare.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use gato_core::{Backend, DType, EmbeddingMode, Modality};
use gato_data::EpisodeFile;
use gato_tokenizers::to_batch;
use gato_train::Trainer;
use gato_transformer::{checkpoint, masked_cross_entropy};
use serde_json::json;

use super::Result;
use crate::cli::ForwardArgs;
use crate::error::CliError;
use crate::output;

pub fn run(be: &Arc<dyn Backend>, args: &ForwardArgs, weights: DType) -> Result<()> {
    let be = be.as_ref();
    if let Some(path) = &args.dump_logits {
        output::writable_file("dump-logits", path)?;
    }
    if let Some(path) = &args.dump_gradients {
        output::writable_file("dump-gradients", path)?;
    }
    if weights != DType::F32 && (args.dump_gradients.is_some() || args.train_steps > 0) {
        return Err(CliError::Argument {
            flag: "weights",
            detail: format!(
                "{weights:?}: gradients and training use the f32 weights (drop --weights)"
            ),
        });
    }
    let t = Instant::now();
    let mut model = checkpoint::load(&args.checkpoint, be)?;
    model.cast_block_weights(be, weights)?;
    let load_s = t.elapsed().as_secs_f64();
    let file = EpisodeFile::open(&args.episode)?;
    let builder = file.builder(model.config(), &args.text_tokenizer)?;
    let t = Instant::now();
    // The first window of whole timesteps that fits the context (design.md §4).
    let (seq, truncated) = file
        .tokenize(args.episode_index, &builder)?
        .first_window(model.config().token_sequence_length)?;
    let batch = to_batch(&[&seq]);
    let tok_s = t.elapsed().as_secs_f64();
    // Without a dump, logits are computed only where the next token is a target.
    let run = || -> Result<_> {
        let t = Instant::now();
        let out = match &args.dump_logits {
            Some(_) => {
                let logits = model.forward(be, &batch)?;
                (masked_cross_entropy(be, &logits, &batch)?, Some(logits))
            }
            None => (model.loss(be, &batch)?, None),
        };
        be.synchronize()?;
        Ok((out, t.elapsed().as_secs_f64()))
    };
    let ((loss, logits), mut fwd_s) = run()?;
    for _ in 1..args.reps {
        fwd_s = fwd_s.min(run()?.1);
    }
    if let (Some(path), Some(logits)) = (&args.dump_logits, &logits) {
        let values = be.download(logits)?.into_f32().unwrap_or_default();
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let ids: Vec<u8> = batch.ids.iter().flat_map(|v| v.to_le_bytes()).collect();
        let local: Vec<u8> = batch
            .local_position
            .iter()
            .flat_map(|p| p.map_or(-1i32, |p| p as i32).to_le_bytes())
            .collect();
        let loss_mask: Vec<u8> = batch.loss.iter().map(|&l| u8::from(l)).collect();
        let image_mask: Vec<u8> = batch
            .modality
            .iter()
            .map(|&m| u8::from(m == Modality::Image))
            .collect();
        let vocab = logits.dims()[2];
        let dump_err = |e: safetensors::SafeTensorError| CliError::Argument {
            flag: "dump-logits",
            detail: format!("cannot write {}: {e}", path.display()),
        };
        let t = batch.seq_len;
        fn view(
            dtype: safetensors::Dtype,
            shape: Vec<usize>,
            data: &[u8],
        ) -> std::result::Result<safetensors::tensor::TensorView<'_>, CliError> {
            safetensors::tensor::TensorView::new(dtype, shape, data).map_err(|e| {
                CliError::Argument {
                    flag: "dump-logits",
                    detail: e.to_string(),
                }
            })
        }
        let views = vec![
            (
                "logits".to_string(),
                view(safetensors::Dtype::F32, vec![t, vocab], &bytes)?,
            ),
            (
                "token_ids".to_string(),
                view(safetensors::Dtype::U32, vec![t], &ids)?,
            ),
            (
                "local_positions".to_string(),
                view(safetensors::Dtype::I32, vec![t], &local)?,
            ),
            (
                "loss_mask".to_string(),
                view(safetensors::Dtype::U8, vec![t], &loss_mask)?,
            ),
            (
                "image_mask".to_string(),
                view(safetensors::Dtype::U8, vec![t], &image_mask)?,
            ),
        ];
        // Image patches ([N, P, P, C], normalised as the model sees them) and each one's (row, rows, col, cols).
        let n_patches = batch.patch_positions.len();
        let p = model.config().img_patch_size;
        let c = model.config().image_channels;
        let patch_bytes: Vec<u8> = batch.patches.iter().flat_map(|v| v.to_le_bytes()).collect();
        let pos_bytes: Vec<u8> = batch
            .patch_positions
            .iter()
            .flat_map(|q| [q.row, q.rows, q.col, q.cols])
            .flat_map(|v| (v as i32).to_le_bytes())
            .collect();
        let mut views = views;
        if n_patches > 0 {
            views.push((
                "patches".to_string(),
                view(
                    safetensors::Dtype::F32,
                    vec![n_patches, p, p, c],
                    &patch_bytes,
                )?,
            ));
            views.push((
                "patch_positions".to_string(),
                view(safetensors::Dtype::I32, vec![n_patches, 4], &pos_bytes)?,
            ));
        }
        let meta: HashMap<String, String> = [(
            "note".to_string(),
            "image positions hold patch indices in token_ids".to_string(),
        )]
        .into();
        safetensors::serialize_to_file(views, Some(meta), path).map_err(dump_err)?;
    }
    if let Some(path) = &args.dump_gradients {
        dump_gradients(be, &model, &batch, path)?;
    }
    let mut train_losses = Vec::new();
    if args.train_steps > 0 {
        let mut trainer = Trainer::new(&model, args.train_steps);
        for _ in 0..args.train_steps {
            train_losses.push(trainer.step(be, &batch, EmbeddingMode::Eval)?.loss);
        }
    }
    if args.format.json {
        output::json(&json!({
            "tokens": batch.seq_len, "loss": loss.loss, "targets": loss.targets, "truncated_to_window": truncated,
            "seconds": {"load": load_s, "tokenize": tok_s, "forward": fwd_s},
            "train_losses": train_losses,
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
        if !train_losses.is_empty() {
            let l: Vec<String> = train_losses.iter().map(|l| format!("{l:.6}")).collect();
            output::print(&format!(
                "loss before each of {} AdamW steps: {}\n",
                l.len(),
                l.join(" ")
            ));
        }
    }
    Ok(())
}

/// The gradients of the masked loss of `batch` (evaluation mode, no dropout), every parameter's as f32.
fn dump_gradients(
    be: &dyn Backend,
    model: &gato_transformer::GatoTransformer,
    batch: &gato_core::TokenBatch,
    path: &std::path::Path,
) -> Result<()> {
    let (_, grads) = model.loss_and_gradients(be, batch, EmbeddingMode::Eval)?;
    let host = gato_train::AdamW::host_gradients(be, &grads)?;
    let tensors: Vec<(String, Vec<f32>, Vec<usize>)> = host
        .into_iter()
        .map(|(n, g)| {
            let dims = grads.get(&n).map_or(vec![g.len()], |t| t.dims().to_vec());
            (n, g, dims)
        })
        .collect();
    Ok(gato_train::checkpoint::write_f32_tensors(
        path, &tensors, None,
    )?)
}
