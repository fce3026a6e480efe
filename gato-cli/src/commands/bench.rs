//! `gato bench`: forward time, tokens/s and GFLOP/s of a Gato forward pass against this machine's measured
//! ceilings (GEMM, FMA peak, memory read bandwidth), the latency of one control step and of one decoded token when
//! acting (f32 weights, bf16 weights, and bf16 weights with bf16 products — [`MatmulPrecision::Bf16`]; the token's
//! time against the time to read its bytes), and peak memory.
//!
//! The forward runs `tokens` synthetic tokens shaped like a proprioceptive episode (timesteps of 39 continuous
//! observations, the separator and 4 action tokens; text-free, image-free) and computes the loss, so logits are
//! computed at the action positions only. FLOPs counted (multiply-add = 2): dense `2·P_blocks·T`, attention
//! `blocks · 2·2·(H·K)·T(T+1)/2` (causal half), logits `2·W·V·targets`.

use std::sync::Arc;
use std::time::Instant;

use gato_core::diagnostics::measure_gemm;
use gato_core::{
    count_parameters, run_scoped, Backend, DType, GatoConfig, MatmulPrecision, Modality, TokenBatch,
};
use gato_transformer::{
    last_logits_in_into, single_token, ActionSampler, DecodeState, GatoTransformer, Sampling,
    WindowPolicy,
};
use serde_json::json;

use super::Result;
use crate::{alloc_count, output};

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

/// The median of `v` (0 when empty; the mean of the middle two for an even count).
fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let h = v.len() / 2;
    if v.len() % 2 == 1 {
        v[h]
    } else {
        (v[h - 1] + v[h]) / 2.0
    }
}

/// Timing of the acting loop with one weight dtype.
struct Acting {
    dtype: DType,
    /// The products' precision the weights were laid out for.
    precision: MatmulPrecision,
    /// Median control step: previous action's last token + observation + separator in one push, then the action
    /// tokens one at a time. Medians, because on a shared machine a step now and then takes twice as long.
    step_ms: f64,
    /// Median of the observation push alone.
    observation_ms: f64,
    /// Median single-token decode (push of one action token).
    token_ms: f64,
    /// Bytes one decoded token reads: matrix weights, biases and norms, the cached keys and values, the legal rows
    /// of the output table.
    token_bytes: f64,
    /// Heap allocations per decoded token (legal-id logits, pick, push), averaged over the tokens of every step
    /// after the first (which warms the backend's buffer pool); `None` when this binary does not count
    /// allocations.
    token_allocations: Option<f64>,
    /// Median heap allocations of an observation push.
    observation_allocations: Option<u64>,
}

/// Acting with a prompt of `prompt` tokens in the KV cache (`policy` for a full window): `steps` control steps
/// of 39 observations + separator + 4 action tokens. The last action token of a step is pushed together with the
/// next observation (its keys and values are not needed before then), as an online agent does.
fn act(
    model: &GatoTransformer,
    be: &dyn Backend,
    precision: MatmulPrecision,
    steps: usize,
    prompt: usize,
    policy: WindowPolicy,
) -> Result<Acting> {
    let c = model.config();
    let mut state = DecodeState::with_policy(model, policy);
    state.push_last(model, be, &synthetic(prompt, 0))?;
    // Reserved up front, so recording a figure allocates nothing inside the counted loop.
    let n = steps.max(1);
    let (mut step_s, mut obs_s, mut tok_s, mut cache_tokens) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n * ACT),
        Vec::with_capacity(n * ACT),
    );
    let (mut obs_allocs, mut tok_allocs, mut counted) = (Vec::with_capacity(n), 0u64, 0usize);
    let mut pending: Option<TokenBatch> = None;
    let mut logits = Vec::with_capacity(1024);
    let mut argmax = ActionSampler::new(Sampling::Argmax, 0)?;
    for k in 0..n {
        let t_idx = prompt / STEP + k;
        let obs = synthetic(STEP, t_idx).slice_single(0..OBS + 1)?;
        let s = Instant::now();
        // One step on the backend's own threads, as `gato act` runs it (no hand-off per op).
        run_scoped(be, || {
            let input = match pending.take() {
                Some(mut last) => {
                    last.extend_single(&obs)?;
                    last
                }
                None => obs,
            };
            let a = alloc_count::allocations();
            let mut h = state.push_last(model, be, &input)?;
            obs_s.push(s.elapsed().as_secs_f64());
            if let (Some(a), Some(b), true) = (a, alloc_count::allocations(), k > 0) {
                obs_allocs.push(b - a);
            }
            for j in 0..ACT {
                let a = alloc_count::allocations();
                // Logits of the legal (continuous) ids only, as acting does.
                last_logits_in_into(model, be, &h, 32000..33024, &mut logits)?;
                let id = argmax.sample_in(&logits, 32000)?;
                if j + 1 < ACT {
                    let s = Instant::now();
                    cache_tokens.push(state.len());
                    h = state.push_token(model, be, id, t_idx as u32, None)?;
                    tok_s.push(s.elapsed().as_secs_f64());
                    if let (Some(a), Some(b), true) = (a, alloc_count::allocations(), k > 0) {
                        tok_allocs += b - a;
                        counted += 1;
                    }
                } else {
                    pending = Some(single_token(id, t_idx as u32, None));
                }
            }
            Ok(())
        })?;
        step_s.push(s.elapsed().as_secs_f64());
    }
    let mean_cache = cache_tokens.iter().sum::<usize>() as f64 / cache_tokens.len().max(1) as f64;
    let dtype = model.block_weight_dtype();
    let matrix_params = (c.num_transformer_blocks
        * c.layer_width
        * (4 * c.attention_width() + 2 * c.feedforward_hidden_size)) as f64;
    let other_params = count_parameters(c)?.transformer_blocks as f64 - matrix_params;
    let kv = 2.0
        * c.num_transformer_blocks as f64
        * c.attention_width() as f64
        * (mean_cache + 1.0)
        * 4.0;
    let head = 1024.0 * c.layer_width as f64 * 4.0;
    Ok(Acting {
        dtype,
        precision,
        step_ms: median(&mut step_s) * 1e3,
        observation_ms: median(&mut obs_s) * 1e3,
        token_ms: median(&mut tok_s) * 1e3,
        token_bytes: matrix_params * dtype.size_in_bytes() as f64 + other_params * 4.0 + kv + head,
        token_allocations: (alloc_count::allocations().is_some() && counted > 0)
            .then(|| tok_allocs as f64 / counted as f64),
        observation_allocations: (!obs_allocs.is_empty()).then(|| {
            obs_allocs.sort_unstable();
            obs_allocs[obs_allocs.len() / 2]
        }),
    })
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    be: &Arc<dyn Backend>,
    config: &str,
    tokens: usize,
    reps: usize,
    act_steps: usize,
    weights: DType,
    threads: Option<usize>,
    as_json: bool,
) -> Result<()> {
    let be = be.as_ref();
    let c = GatoConfig::from_name_or_path(config)?;
    let tokens = tokens.clamp(STEP, c.token_sequence_length);
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    eprintln!("[1/7] measuring this machine: GEMM 1024x768 · 768x3072, FMA peak and read bandwidth ({threads} threads) ...");
    let gemm = measure_gemm(be, 1024, 3072, 768, 10)?;
    // The FMA peak and memory bandwidth are the CPU's; for a GPU backend they say nothing.
    let (fma, bw) = if be.name() == gato_core::cpu::CPU_BACKEND_NAME {
        (
            Some(gato_core::cpu::measure_fma_peak(threads)?.value),
            Some(gato_core::cpu::measure_read_bandwidth(threads, 256 << 20)?.value),
        )
    } else {
        (None, None)
    };
    eprintln!("[2/7] initialising {config} ...");
    let mut model = GatoTransformer::init(be, &c, 0)?;
    model.cast_block_weights(be, weights)?;
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
    eprintln!("[3/7] forward on {tokens} tokens ({weights} weights), {reps} timed runs ...");
    model.loss(be, &batch)?; // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let s = Instant::now();
        model.loss(be, &batch)?;
        be.synchronize()?;
        best = best.min(s.elapsed().as_secs_f64());
    }
    // Each acting configuration: the decoder weights cast, laid out for the products' precision, then acted with.
    let prompt = (c.token_sequence_length / 2 / STEP) * STEP;
    let mut acting = |dtype: DType,
                      precision: MatmulPrecision,
                      steps: usize,
                      prompt: usize,
                      policy: WindowPolicy|
     -> Result<(bool, Acting)> {
        model.cast_block_weights(be, dtype)?;
        let packed = model.pack_block_weights(be, precision)?;
        Ok((packed, act(&model, be, precision, steps, prompt, policy)?))
    };
    let (f32_products, bf16_products) = (MatmulPrecision::F32, MatmulPrecision::Bf16);
    eprintln!("[4/7] acting with f32 weights: {act_steps} control steps of 39 observations + separator + 4 action tokens ...");
    let (packed, acting_f32) = acting(
        DType::F32,
        f32_products,
        act_steps,
        prompt,
        WindowPolicy::Rebuild,
    )?;
    eprintln!("[5/7] acting with bf16 weights ...");
    let (_, acting_bf16) = acting(
        DType::BF16,
        f32_products,
        act_steps,
        prompt,
        WindowPolicy::Rebuild,
    )?;
    // A full window: every step overflows it. Rebuild recomputes the kept window; slide moves the cache.
    let full = (c.token_sequence_length / STEP) * STEP;
    eprintln!("[6/7] acting with bf16 weights and a full window ({full} tokens): 3 steps each, rebuild and slide ...");
    let (_, full_rebuild) = acting(DType::BF16, f32_products, 3, full, WindowPolicy::Rebuild)?;
    let (_, full_slide) = acting(DType::BF16, f32_products, 3, full, WindowPolicy::Slide)?;
    eprintln!("[7/7] acting with bf16 weights and bf16 products ...");
    let (_, acting_bf16_products) = acting(
        DType::BF16,
        bf16_products,
        act_steps,
        prompt,
        WindowPolicy::Rebuild,
    )?;
    // Whether this backend multiplies bf16 × bf16 here (the CPU: AVX512_BF16); elsewhere the products stay f32.
    let bf16_products =
        be.name() != gato_core::cpu::CPU_BACKEND_NAME || gato_core::cpu::bf16_products_available();
    let actings = [&acting_f32, &acting_bf16, &acting_bf16_products];
    let gflops = flops / best / 1e9;
    let rss = peak_rss();
    let acting_json = |a: &Acting| {
        json!({
            "weights": a.dtype.as_str(), "matmul_precision": a.precision.as_str(), "step_ms": a.step_ms, "observation_ms": a.observation_ms,
            "token_ms": a.token_ms, "token_bytes": a.token_bytes,
            "token_ms_at_read_bandwidth": bw.map(|b| a.token_bytes / b / 1e6),
            "token_allocations": a.token_allocations,
            "observation_allocations": a.observation_allocations,
        })
    };
    if as_json {
        output::json(&json!({
            "backend": be.name(), "device": be.device_description(), "config": config,
            "threads": threads, "weights": weights.as_str(),
            "tokens": tokens, "targets": targets, "flop": flops, "forward_ms": best * 1e3,
            "tokens_per_s": tokens as f64 / best, "gflops": gflops,
            "gemm_ceiling_gflops": gemm.gflops, "ratio_to_gemm_ceiling": gflops / gemm.gflops,
            "fma_peak_gflops": fma, "ratio_to_fma_peak": fma.map(|f| gflops / f),
            "read_bandwidth_gbs": bw,
            "prompt_tokens": prompt, "acting_weights_laid_out": packed,
            "acting": actings.map(acting_json),
            "bf16_products_in_hardware": bf16_products,
            "full_window": {"prompt_tokens": full, "weights": "bf16",
                "rebuild_step_ms": full_rebuild.step_ms, "slide_step_ms": full_slide.step_ms},
            "peak_rss_bytes": rss,
        }));
    } else {
        let mut s = format!(
            "backend {} ({})\nconfig {config}: {} parameters\n\
             GEMM ceiling (1024x768·768x3072 f32): {:.1} GFLOP/s\n",
            be.name(),
            be.device_description(),
            p.total,
            gemm.gflops,
        );
        if let (Some(f), Some(b)) = (fma, bw) {
            s += &format!("FMA peak ({threads} threads): {f:.1} GFLOP/s; memory read bandwidth: {b:.1} GB/s\n");
        }
        s += &format!(
            "forward {tokens} tokens ({targets} action targets, {weights} weights): {:.1} ms, {:.0} tokens/s\n\
             FLOP counted: {:.1} GFLOP -> {:.1} GFLOP/s = {:.0}% of the GEMM ceiling{}\n",
            best * 1e3,
            tokens as f64 / best,
            flops / 1e9,
            gflops,
            100.0 * gflops / gemm.gflops,
            fma.map_or(String::new(), |f| format!(", {:.0}% of the FMA peak", 100.0 * gflops / f)),
        );
        s += &format!(
            "acting ({prompt} prompt tokens cached; step = last action token + 39 obs + | pushed together, then 4 action tokens{}):\n",
            if packed { "; weights laid out for few-row products" } else { "" }
        );
        for a in actings {
            let products = match a.precision {
                MatmulPrecision::F32 => "",
                MatmulPrecision::Bf16 if bf16_products => ", bf16 products",
                MatmulPrecision::Bf16 => ", bf16 products asked (not on this CPU: f32)",
            };
            s += &format!(
                "  {:>4} weights{products}: step {:.1} ms (observation {:.1} ms, one action token {:.2} ms",
                a.dtype.as_str(),
                a.step_ms,
                a.observation_ms,
                a.token_ms
            );
            if let Some(b) = bw {
                let ideal = a.token_bytes / b / 1e6;
                s += &format!(
                    " = {:.2}x the {:.2} ms to read its {:.0} MB at {b:.1} GB/s",
                    a.token_ms / ideal,
                    ideal,
                    a.token_bytes / 1e6
                );
            }
            s += ")\n";
        }
        let counted: Option<Vec<f64>> = actings.iter().map(|a| a.token_allocations).collect();
        s += &match counted {
            Some(per_token) => format!(
                "  heap allocations per decoded token after the first step: {:.2} (f32), {:.2} (bf16), {:.2} (bf16 products); per observation push (median): {} / {} / {}\n",
                per_token[0],
                per_token[1],
                per_token[2],
                acting_f32.observation_allocations.unwrap_or(0),
                acting_bf16.observation_allocations.unwrap_or(0),
                acting_bf16_products.observation_allocations.unwrap_or(0)
            ),
            _ if alloc_count::allocations().is_none() => "  heap allocations: not counted (this binary does not install gato_cli::alloc_count::CountingAllocator)\n".to_string(),
            _ => "  heap allocations: not counted (counted from the second step on: use --act-steps 2 or more)\n".to_string(),
        };
        s += &format!(
            "  full window ({full} tokens, bf16): step {:.1} ms rebuilding the cache (exact), {:.1} ms sliding it (`--window slide`)\n",
            full_rebuild.step_ms, full_slide.step_ms
        );
        s += &format!(
            "peak resident memory: {}\n",
            rss.map_or("unknown".to_string(), |b| format!(
                "{:.0} MiB",
                b as f64 / (1 << 20) as f64
            ))
        );
        output::print(&s);
    }
    Ok(())
}
