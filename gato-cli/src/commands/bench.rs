//! `gato bench`: forward time, tokens/s and GFLOP/s of a Gato forward pass against this machine's measured GEMM
//! ceiling, the latency of one control step when acting, and peak memory.
//!
//! The forward runs `tokens` synthetic tokens shaped like a proprioceptive episode (timesteps of 39 continuous
//! observations, the separator and 4 action tokens; text-free, image-free) and computes the loss, so logits are
//! computed at the action positions only. FLOPs counted (multiply-add = 2): dense `2·P_blocks·T`, attention
//! `blocks · 2·2·(H·K)·T(T+1)/2` (causal half), logits `2·W·V·targets`.

use std::sync::Arc;
use std::time::Instant;

use gato_core::diagnostics::measure_gemm;
use gato_core::{count_parameters, Backend, GatoConfig, Modality, TokenBatch};
use gato_transformer::{last_logits_in, single_token, DecodeState, GatoTransformer};
use serde_json::json;

use super::Result;
use crate::output;

const OBS: usize = 39;
const ACT: usize = 4;
const STEP: usize = OBS + 1 + ACT;

/// `n` tokens of MetaWorld-shaped timesteps starting at timestep `t0`.
fn synthetic(n: usize, t0: usize) -> TokenBatch {
    let mut b = TokenBatch {
        batch: 1,
        seq_len: n,
        lengths: vec![n],
        ..Default::default()
    };
    for i in 0..n {
        let (t, j) = (t0 + i / STEP, i % STEP);
        let (id, modality, local, loss) = match j {
            j if j < OBS => (
                32000 + ((i * 37 + t * 11) % 1024) as u32,
                Modality::Continuous,
                Some(j as u32),
                false,
            ),
            j if j == OBS => (33024, Modality::Separator, None, false),
            _ => (
                32000 + ((i * 13) % 1024) as u32,
                Modality::Continuous,
                None,
                true,
            ),
        };
        b.ids.push(id);
        b.modality.push(modality);
        b.local_position.push(local);
        b.loss.push(loss);
        b.timestep.push(t as u32);
    }
    b
}

/// Peak resident memory in bytes (Linux `VmHWM`), if known.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

pub fn run(
    be: &Arc<dyn Backend>,
    config: &str,
    tokens: usize,
    reps: usize,
    act_steps: usize,
    as_json: bool,
) -> Result<()> {
    let be = be.as_ref();
    let c = GatoConfig::from_name_or_path(config)?;
    let tokens = tokens.clamp(STEP, c.token_sequence_length);
    eprintln!("[1/4] measuring the GEMM ceiling (1024x768 · 768x3072) ...");
    let gemm = measure_gemm(be, 1024, 3072, 768, 5)?;
    eprintln!("[2/4] initialising {config} ...");
    let model = GatoTransformer::init(be, &c, 0)?;
    let batch = synthetic(tokens, 0);
    let targets = batch.loss.iter().skip(1).filter(|&&l| l).count();
    let p = count_parameters(&c)?;
    let (t, hk, w) = (
        tokens as f64,
        c.attention_width() as f64,
        c.layer_width as f64,
    );
    let vocab = c.layout()?.vocab_size as f64;
    let flops = 2.0 * p.transformer_blocks as f64 * t
        + c.num_transformer_blocks as f64 * 4.0 * hk * t * (t + 1.0) / 2.0
        + 2.0 * w * vocab * targets as f64;
    eprintln!("[3/4] forward on {tokens} tokens, {reps} timed runs ...");
    model.loss(be, &batch)?; // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let s = Instant::now();
        model.loss(be, &batch)?;
        be.synchronize()?;
        best = best.min(s.elapsed().as_secs_f64());
    }
    eprintln!("[4/4] acting: {act_steps} control steps of 39 observations + separator + 4 action tokens ...");
    let mut state = DecodeState::new(&model);
    let prompt = (c.token_sequence_length / 2 / STEP) * STEP;
    state.push(&model, be, &synthetic(prompt, 0))?;
    let mut step_s = Vec::new();
    for k in 0..act_steps {
        let t_idx = prompt / STEP + k;
        let obs = synthetic(STEP, t_idx).slice_single(0..OBS + 1)?;
        let s = Instant::now();
        let mut h = state.push(&model, be, &obs)?;
        for _ in 0..ACT {
            // Logits of the legal (continuous) ids only, as acting does.
            let logits = last_logits_in(&model, be, &h, 32000..33024)?;
            let best = logits
                .iter()
                .enumerate()
                .fold(0, |b, (i, &x)| if x > logits[b] { i } else { b });
            h = state.push(
                &model,
                be,
                &single_token(32000 + best as u32, t_idx as u32, None),
            )?;
        }
        step_s.push(s.elapsed().as_secs_f64());
    }
    let act_ms = step_s.iter().sum::<f64>() / step_s.len().max(1) as f64 * 1e3;
    let gflops = flops / best / 1e9;
    let rss = peak_rss();
    if as_json {
        output::json(&json!({
            "backend": be.name(), "device": be.device_description(), "config": config,
            "tokens": tokens, "targets": targets, "flop": flops, "forward_ms": best * 1e3,
            "tokens_per_s": tokens as f64 / best, "gflops": gflops,
            "gemm_ceiling_gflops": gemm.gflops, "ratio_to_gemm_ceiling": gflops / gemm.gflops,
            "act_ms_per_step": act_ms, "peak_rss_bytes": rss,
        }));
    } else {
        output::print(&format!(
            "backend {} ({})\nconfig {config}: {} parameters\n\
             GEMM ceiling (1024x768·768x3072 f32): {:.1} GFLOP/s\n\
             forward {tokens} tokens ({targets} action targets): {:.1} ms, {:.0} tokens/s\n\
             FLOP counted: {:.1} GFLOP -> {:.1} GFLOP/s = {:.0}% of the GEMM ceiling\n\
             acting, one control step (39 obs + | + 4 action tokens, {} tokens cached): {:.1} ms\n\
             peak resident memory: {}\n",
            be.name(),
            be.device_description(),
            p.total,
            gemm.gflops,
            best * 1e3,
            tokens as f64 / best,
            flops / 1e9,
            gflops,
            100.0 * gflops / gemm.gflops,
            prompt,
            act_ms,
            rss.map_or("unknown".to_string(), |b| format!(
                "{:.0} MiB",
                b as f64 / (1 << 20) as f64
            )),
        ));
    }
    Ok(())
}
