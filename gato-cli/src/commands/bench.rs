//! `gato bench`: forward time, tokens/s and GFLOP/s of a Gato forward pass against this machine's measured
//! ceilings (GEMM, FMA peak, memory read bandwidth), the latency of one control step and of one decoded token when
//! acting (f32 weights, bf16 weights, and bf16 weights with bf16 products — [`MatmulPrecision::Bf16`]; the token's
//! time against the time to read its bytes), and peak memory.
//!
//! Acting runs the one acting loop of `gato-agent` on a recorded episode (default: the bundled Meta-World reach
//! episode, 39 continuous observations and 4 continuous action tokens per step), exactly as `gato act` runs it —
//! the same prompt, sampler, seed and teacher forcing — so a test checks that both take the same actions.
//!
//! The forward runs `tokens` synthetic tokens shaped like a proprioceptive episode (timesteps of 39 continuous
//! observations, the separator and 4 action tokens; text-free, image-free) and computes the loss, so logits are
//! computed at the action positions only. FLOPs counted (multiply-add = 2): dense `2·P_blocks·T`, attention
//! `blocks · 2·2·(H·K)·T(T+1)/2` (causal half), logits `2·W·V·targets`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use gato_agent::{evaluate_offline, prompt_from, Agent, StepObserver};
use gato_core::diagnostics::measure_gemm;
use gato_core::{Backend, DType, GatoConfig, MatmulPrecision, Modality, TokenBatch};
use gato_data::EpisodeFile;
use gato_tokenizers::{SequenceBuilder, Timestep};
use gato_transformer::{
    count_parameters, ActionSampler, BlockShapes, GatoTransformer, Sampling, WindowPolicy,
};
use serde_json::json;

use super::Result;
use crate::error::CliError;
use crate::{alloc_count, output};

const OBS: usize = 39;
const ACT: usize = 4;
const STEP: usize = OBS + 1 + ACT;

/// `n` tokens of MetaWorld-shaped timesteps starting at timestep `t0`.
pub(super) fn synthetic(n: usize, t0: usize) -> TokenBatch {
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

/// The targets of `batch` and the FLOPs its forward is counted as (module docs): dense `2·P_blocks·T`, causal
/// attention, logits at the targets.
pub(super) fn forward_flops(c: &GatoConfig, batch: &TokenBatch) -> Result<(usize, f64)> {
    let targets = batch.loss.iter().skip(1).filter(|&&l| l).count();
    let p = count_parameters(c)?;
    let (t, hk, w) = (
        batch.seq_len as f64,
        c.attention_width() as f64,
        c.layer_width as f64,
    );
    let vocab = c.layout()?.vocab_size as f64;
    let flops = 2.0 * p.transformer_blocks as f64 * t
        + c.num_transformer_blocks as f64 * 4.0 * hk * t * (t + 1.0) / 2.0
        + 2.0 * w * vocab * targets as f64;
    Ok((targets, flops))
}

/// Peak resident memory in bytes (Linux `VmHWM`), if known.
pub(super) fn peak_rss() -> Option<u64> {
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
    /// Median control step: pending action tokens + observation + separator in one push, then the action tokens
    /// one at a time. Medians, because on a shared machine a step now and then takes twice as long.
    step_ms: f64,
    /// Median of the observation push alone.
    observation_ms: f64,
    /// Median decoded token that is pushed (legal-id logits, sample, push).
    token_ms: f64,
    /// Bytes one decoded token reads: matrix weights, biases and norms, the cached keys and values, the legal rows
    /// of the output table.
    token_bytes: f64,
    /// Heap allocations per decoded token, averaged over the tokens of every step after the first (which warms
    /// the backend's buffer pool); `None` when this binary does not count allocations.
    token_allocations: Option<f64>,
    /// Median heap allocations of an observation push.
    observation_allocations: Option<u64>,
    /// Tokens in the prompt.
    prompt_tokens: usize,
    /// The sampled action tokens of each step.
    actions: Vec<Vec<u32>>,
}

/// Times and allocation counts of each part of a control step, from the agent's [`StepObserver`] callbacks.
#[derive(Default)]
struct Recorder {
    started: Option<Instant>,
    allocations_at: Option<u64>,
    steps: usize,
    observation_s: Vec<f64>,
    token_s: Vec<f64>,
    cached_tokens: Vec<usize>,
    observation_allocations: Vec<u64>,
    token_allocations: u64,
    tokens_counted: usize,
}

impl Recorder {
    fn with_capacity(steps: usize, tokens: usize) -> Self {
        // Reserved up front, so recording a figure allocates nothing inside the counted loop.
        Recorder {
            observation_s: Vec::with_capacity(steps),
            token_s: Vec::with_capacity(steps * tokens),
            cached_tokens: Vec::with_capacity(steps * tokens),
            observation_allocations: Vec::with_capacity(steps),
            ..Default::default()
        }
    }

    fn start(&mut self) {
        self.allocations_at = alloc_count::allocations();
        self.started = Some(Instant::now());
    }

    fn seconds(&self) -> f64 {
        self.started.map_or(0.0, |s| s.elapsed().as_secs_f64())
    }

    /// Allocations since [`Recorder::start`], counted from the second step on.
    fn allocations(&self) -> Option<u64> {
        match (
            self.allocations_at,
            alloc_count::allocations(),
            self.steps > 1,
        ) {
            (Some(a), Some(b), true) => Some(b - a),
            _ => None,
        }
    }
}

impl StepObserver for Recorder {
    fn observation_start(&mut self) {
        self.start();
    }

    fn observation_end(&mut self, _cached: usize) {
        self.steps += 1;
        self.observation_s.push(self.seconds());
        if let Some(n) = self.allocations() {
            self.observation_allocations.push(n);
        }
    }

    fn token_start(&mut self, _j: usize) {
        self.start();
    }

    fn token_end(&mut self, _j: usize, pushed: bool, cached: usize) {
        if !pushed {
            return;
        }
        self.token_s.push(self.seconds());
        self.cached_tokens.push(cached);
        if let Some(n) = self.allocations() {
            self.token_allocations += n;
            self.tokens_counted += 1;
        }
    }
}

/// Acting on `steps` of a recorded episode exactly as `gato act` does ([`evaluate_offline`]: the same prompt,
/// sampler and teacher forcing), with a prompt of at most `prompt_budget` tokens from the file's first episode and
/// `policy` for a full window.
#[allow(clippy::too_many_arguments)]
fn act(
    model: &GatoTransformer,
    be: &dyn Backend,
    precision: MatmulPrecision,
    file: &EpisodeFile,
    builder: &SequenceBuilder,
    steps: &[Timestep],
    prompt_budget: usize,
    policy: WindowPolicy,
) -> Result<Acting> {
    let c = model.config();
    let prompt = prompt_from(&file.tokenize(0, builder)?, prompt_budget);
    let sampler = ActionSampler::new(Sampling::Temperature(1.0), 0)?;
    let mut agent = Agent::new(model, builder, sampler, policy);
    agent.reset(be, Some(&prompt))?;
    let mut rec = Recorder::with_capacity(steps.len(), builder.action_tokens());
    let results = evaluate_offline(&mut agent, be, steps, &mut rec)?;
    let mut step_s: Vec<f64> = results.iter().map(|r| r.seconds).collect();
    let mean_cache =
        rec.cached_tokens.iter().sum::<usize>() as f64 / rec.cached_tokens.len().max(1) as f64;
    let dtype = model.block_weight_dtype();
    let shapes = BlockShapes::of(c);
    let blocks = c.num_transformer_blocks as f64;
    let matrix_params = blocks * shapes.matrix_params() as f64;
    let other_params = blocks * shapes.vector_params() as f64;
    // Keys and values of every cached token, and the legal rows of the output table (the largest field's range).
    let kv = 2.0 * blocks * c.attention_width() as f64 * mean_cache * 4.0;
    let legal = (0..builder.action_tokens())
        .filter_map(|j| builder.legal_action_ids(j).map(|r| r.len()))
        .max()
        .unwrap_or(0) as f64;
    let head = legal * c.layer_width as f64 * 4.0;
    Ok(Acting {
        dtype,
        precision,
        step_ms: median(&mut step_s) * 1e3,
        observation_ms: median(&mut rec.observation_s) * 1e3,
        token_ms: median(&mut rec.token_s) * 1e3,
        token_bytes: matrix_params * dtype.size_in_bytes() as f64 + other_params * 4.0 + kv + head,
        token_allocations: (alloc_count::allocations().is_some() && rec.tokens_counted > 0)
            .then(|| rec.token_allocations as f64 / rec.tokens_counted as f64),
        observation_allocations: (!rec.observation_allocations.is_empty()).then(|| {
            rec.observation_allocations.sort_unstable();
            rec.observation_allocations[rec.observation_allocations.len() / 2]
        }),
        prompt_tokens: prompt.len(),
        actions: results.into_iter().map(|r| r.tokens).collect(),
    })
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    be: &Arc<dyn Backend>,
    config: &str,
    episode: &Path,
    tokens: usize,
    reps: usize,
    act_steps: usize,
    weights: DType,
    threads: Option<usize>,
    as_json: bool,
) -> Result<()> {
    let be = be.as_ref();
    let c = GatoConfig::from_name_or_path(config)?;
    // At least one timestep (so the loss has targets), at most the model's context window.
    super::check_range("tokens", tokens, STEP, c.token_sequence_length)?;
    // The episode acted on, and the steps it has, checked before anything is measured.
    let file = EpisodeFile::open(episode)?;
    let builder = file.builder(&c, "bytes")?;
    let mut steps = file.timesteps(0)?;
    if act_steps == 0 || act_steps > steps.len() {
        return Err(CliError::Argument {
            flag: "act-steps",
            detail: format!(
                "{act_steps} is out of range: allowed 1 to {} (the timesteps of {}'s first episode)",
                steps.len(),
                episode.display()
            ),
        });
    }
    let threads =
        threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    eprintln!("[1/7] measuring this machine: GEMM 1024x768 · 768x3072, FMA peak and read bandwidth ({threads} threads) ...");
    let gemm = measure_gemm(be, 1024, 3072, 768, 10)?;
    // The FMA peak and memory bandwidth are the CPU's; for a GPU backend they say nothing.
    let (fma, bw) = if be.name() == gato_cpu::CPU_BACKEND_NAME {
        (
            Some(gato_cpu::measure_fma_peak(threads)?.value),
            Some(gato_cpu::measure_read_bandwidth(threads, 256 << 20)?.value),
        )
    } else {
        (None, None)
    };
    eprintln!("[2/7] initialising {config} ...");
    let mut model = GatoTransformer::init(be, &c, 0)?;
    model.cast_block_weights(be, weights)?;
    let batch = synthetic(tokens, 0);
    let (targets, flops) = forward_flops(&c, &batch)?;
    let p = count_parameters(&c)?;
    eprintln!("[3/7] forward on {tokens} tokens ({weights} weights), {reps} timed runs ...");
    model.loss(be, &batch)?; // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let s = Instant::now();
        model.loss(be, &batch)?;
        be.synchronize()?;
        best = best.min(s.elapsed().as_secs_f64());
    }
    // Acting on a recorded episode, as `gato act` does: each configuration casts the decoder weights, lays them
    // out for the products' precision, then acts.
    let half = c.token_sequence_length / 2;
    let mut acting = |dtype: DType,
                      precision: MatmulPrecision,
                      steps: &[Timestep],
                      prompt_budget: usize,
                      policy: WindowPolicy|
     -> Result<(bool, Acting)> {
        model.cast_block_weights(be, dtype)?;
        let packed = model.pack_block_weights(be, precision)?;
        let a = act(
            &model,
            be,
            precision,
            &file,
            &builder,
            steps,
            prompt_budget,
            policy,
        )?;
        Ok((packed, a))
    };
    let (f32_products, bf16_products) = (MatmulPrecision::F32, MatmulPrecision::Bf16);
    let env = file.env_id().to_string();
    eprintln!(
        "[4/7] acting with f32 weights: {act_steps} control steps of {env} (as `gato act`) ..."
    );
    steps.truncate(act_steps);
    let (packed, acting_f32) = acting(
        DType::F32,
        f32_products,
        &steps,
        half,
        WindowPolicy::Rebuild,
    )?;
    eprintln!("[5/7] acting with bf16 weights ...");
    let (_, acting_bf16) = acting(
        DType::BF16,
        f32_products,
        &steps,
        half,
        WindowPolicy::Rebuild,
    )?;
    // A full window: every step overflows it. Rebuild recomputes the kept window; slide moves the cache.
    let full = c.token_sequence_length;
    let few = &steps[..steps.len().min(3)];
    eprintln!("[6/7] acting with bf16 weights and a full window (prompt of up to {full} tokens): 3 steps each, rebuild and slide ...");
    let (_, full_rebuild) = acting(DType::BF16, f32_products, few, full, WindowPolicy::Rebuild)?;
    let (_, full_slide) = acting(DType::BF16, f32_products, few, full, WindowPolicy::Slide)?;
    eprintln!("[7/7] acting with bf16 weights and bf16 products ...");
    let (_, acting_bf16_products) = acting(
        DType::BF16,
        bf16_products,
        &steps,
        half,
        WindowPolicy::Rebuild,
    )?;
    let prompt = acting_f32.prompt_tokens;
    let full = full_rebuild.prompt_tokens;
    // Whether this backend multiplies bf16 × bf16 here (the CPU: AVX512_BF16); elsewhere the products stay f32.
    let bf16_products =
        be.name() != gato_cpu::CPU_BACKEND_NAME || gato_cpu::bf16_products_available();
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
            "episode": episode.display().to_string(), "env": env,
            "prompt_tokens": prompt, "acting_weights_laid_out": packed,
            "actions": acting_f32.actions,
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
            "acting on {env} as `gato act` ({prompt} prompt tokens cached; step = pending action tokens + observation + | pushed together, then the action tokens one at a time{}):\n",
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
