//! `gato bench --train`: one training step — forward and backward over one sequence of `tokens` synthetic
//! proprioceptive tokens (as `gato bench`'s forward), the gradients' global norm (clipping) and AdamW in place —
//! timed part by part against this machine's measured FMA peak, with peak memory.
//!
//! FLOPs counted are the model's (the MFU convention): 3 × the forward's (`gato bench` counts the forward as
//! dense `2·P_blocks·T`, causal attention `blocks·2·2·(H·K)·T(T+1)/2` and logits `2·W·V·targets`), backward
//! taken as twice the forward; the training forward keeps its activations, so that is also what runs.
//!
//! `--matmul-precision bf16` times mixed-precision steps (design.md §8: bf16 block weights and head, f32 master
//! weights) where the backend has fast bf16 products ([`gato_train::effective_precision`]); elsewhere f32, and the
//! report says which ran.

use std::sync::Arc;
use std::time::Instant;

use gato_core::{Backend, EmbeddingMode, GatoConfig, MatmulPrecision};
use gato_train::{clip_scale, effective_precision, learning_rate, step_model, AdamW, ParamMap};
use gato_transformer::{count_parameters, GatoTransformer};
use serde_json::json;

use super::bench::{forward_flops, peak_rss, synthetic};
use super::Result;
use crate::output;

pub fn run(
    be: &Arc<dyn Backend>,
    config: &str,
    tokens: usize,
    reps: usize,
    threads: Option<usize>,
    asked: MatmulPrecision,
    as_json: bool,
) -> Result<()> {
    let be = be.as_ref();
    let precision = effective_precision(be, asked);
    let c = GatoConfig::from_name_or_path(config)?;
    super::check_range("tokens", tokens, 45, c.token_sequence_length)?;
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    eprintln!("[1/3] measuring this machine's FMA peak ({threads} threads) ...");
    let fma = if be.name() == gato_cpu::CPU_BACKEND_NAME {
        Some(gato_cpu::measure_fma_peak(threads)?.value)
    } else {
        None
    };
    eprintln!("[2/3] initialising {config} ...");
    let model = GatoTransformer::init(be, &c, 0)?;
    let batch = synthetic(tokens, 0);
    let (targets, forward) = forward_flops(&c, &batch)?;
    let p = count_parameters(&c)?;
    let flops = 3.0 * forward;
    eprintln!("[3/3] training steps on {tokens} tokens, {reps} timed after a warm-up ...");
    let mut params = ParamMap::from_model(&model);
    let mut opt = AdamW::default();
    let mut best = [f64::INFINITY; 4];
    // The forward alone (loss at the targets), for the split of forward+backward.
    let mut forward = f64::INFINITY;
    for _ in 0..=reps {
        let m = step_model(be, &params, &c, precision)?;
        let s = Instant::now();
        m.loss(be, &batch)?;
        be.synchronize()?;
        forward = forward.min(s.elapsed().as_secs_f64());
    }
    for rep in 0..=reps {
        let s = Instant::now();
        let grads = {
            // The model view shares the parameters' storage; dropped before the in-place update.
            let m = step_model(be, &params, &c, precision)?;
            m.loss_and_gradients(be, &batch, EmbeddingMode::Eval)?.1
        };
        be.synchronize()?;
        let backward = s.elapsed().as_secs_f64();
        let s = Instant::now();
        let scale = clip_scale(
            AdamW::global_norm(be, &grads)?,
            c.training.gradient_clip_norm,
        );
        let norm = s.elapsed().as_secs_f64();
        let s = Instant::now();
        let lr = learning_rate(&c.training, rep, reps + 1);
        opt.step(be, &c.training, &mut params, &grads, lr, scale)?;
        be.synchronize()?;
        let adam = s.elapsed().as_secs_f64();
        if rep > 0 {
            let parts = [backward, norm, adam, backward + norm + adam];
            for (b, x) in best.iter_mut().zip(parts) {
                *b = b.min(x);
            }
        }
    }
    let [fb, norm, adam, step] = best;
    let gflops = flops / step / 1e9;
    let rss = peak_rss();
    if as_json {
        output::json(&json!({
            "backend": be.name(), "config": config, "threads": threads, "tokens": tokens, "targets": targets,
            "precision": precision.as_str(),
            "parameters": p.total, "model_flop": flops, "step_ms": step * 1e3,
            "forward_backward_ms": fb * 1e3, "forward_ms": forward * 1e3, "gradient_norm_ms": norm * 1e3, "adamw_ms": adam * 1e3,
            "tokens_per_s": tokens as f64 / step, "gflops": gflops, "fma_peak_gflops": fma,
            "ratio_to_fma_peak": fma.map(|f| gflops / f), "peak_rss_bytes": rss,
        }));
        return Ok(());
    }
    let mut s = format!(
        "training step: {config} ({} parameters), one sequence of {tokens} tokens ({targets} targets), {} backend, {threads} threads, {precision} products{}\n",
        output::human(p.total as u64),
        be.name(),
        if precision == asked {
            String::new()
        } else {
            format!(" ({asked} asked; no fast bf16 products here)")
        }
    );
    s += &format!(
        "step {:.1} ms = forward+backward {:.1} ms (the forward alone: {:.1} ms) + gradient norm {:.1} ms + AdamW {:.1} ms (best of {reps})\n",
        step * 1e3,
        fb * 1e3,
        forward * 1e3,
        norm * 1e3,
        adam * 1e3
    );
    s += &format!(
        "{:.0} tokens/s; model FLOP 3 × forward = {:.1} GFLOP -> {:.1} GFLOP/s{}\n",
        tokens as f64 / step,
        flops / 1e9,
        gflops,
        fma.map_or(String::new(), |f| format!(
            " = {:.0}% of the FMA peak ({f:.0} GFLOP/s)",
            100.0 * gflops / f
        ))
    );
    if let Some(r) = rss {
        s += &format!(
            "peak resident memory {:.0} MiB\n",
            r as f64 / (1 << 20) as f64
        );
    }
    output::print(&s);
    Ok(())
}
