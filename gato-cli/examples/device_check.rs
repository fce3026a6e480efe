//! GPU end-to-end checks and benchmark, run by `gato-cuda/scripts/device-check.sh` on a machine with a GPU.
//!
//! 1. CUDA logits vs CPU logits on a real bundled episode for `tiny` and `small` (f32: relative error < 1e-4;
//!    bf16 decoder weights on CUDA against the f32 CPU logits: < 2e-2).
//! 2. KV-cache decoding on CUDA equals the full forward (< 1e-4).
//! 3. Training on CUDA vs the CPU for `tiny` (design.md §8): the loss and every gradient (f32: relative error
//!    < 1e-4; bf16 products on CUDA against f32 on the CPU: < 2e-2), and a 10-step loss trajectory (< 1e-3).
//!    Data parallel over NCCL with world size 1 against the plain step (skipped where NCCL is not installed).
//! 4. Forward tokens/s for `small` and `baseline` at batch 8 × 1024 tokens (f32 and bf16 weights), model FLOP
//!    utilisation against the bf16 peak given in `GATO_PEAK_TFLOPS` (default 989, H100/H200 SXM dense bf16), and
//!    the per-token decode latency with the KV cache.
//! 5. Training steps (forward, backward, clipping, AdamW) for `small` and `baseline` at 8 × 1024 tokens, f32 and
//!    bf16 products: tokens/s and MFU (3× the forward's FLOPs). Prints a table last; exits non-zero if a check
//!    fails.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use gato_core::{
    create_backend, Backend, BackendOptions, EmbeddingMode, GatoConfig, MatmulPrecision, Modality,
    TokenBatch,
};
use gato_cuda as _;
use gato_data::EpisodeFile;
use gato_tokenizers::to_batch;
use gato_train::{accumulated_gradients, AdamW, Trainer};
use gato_transformer::checkpoint;
use gato_transformer::{last_logits, single_token, DecodeState, Dropout, GatoTransformer};

fn rel(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

fn logits(model: &GatoTransformer, be: &dyn Backend, b: &TokenBatch) -> Vec<f32> {
    be.download(&model.forward(be, b).unwrap())
        .unwrap()
        .into_f32()
        .unwrap()
}

/// Forward FLOPs of `c` on 8 sequences of 1024 tokens (matrix products and attention's two products).
fn forward_flops(c: &GatoConfig) -> f64 {
    let params = gato_transformer::count_parameters(c)
        .unwrap()
        .transformer_blocks as f64;
    let (l, w, hk) = (1024.0, c.layer_width as f64, c.attention_width() as f64);
    8.0 * (2.0 * params * l
        + 2.0 * 2.0 * c.num_transformer_blocks as f64 * l * l * hk / 2.0
        + 2.0 * l * w * 33025.0)
}

/// Training on CUDA against the CPU for `tiny`: gradients (f32 and bf16) and a 10-step trajectory.
fn training_checks(cpu: &dyn Backend, cuda: &dyn Backend, rows: &mut Vec<String>) -> bool {
    let mut ok = true;
    let mut c = GatoConfig::tiny();
    c.training.warmup_steps = 2;
    c.training.learning_rate = 3e-3;
    let ep = EpisodeFile::open(std::path::Path::new("data/episodes/babyai.safetensors")).unwrap();
    let b = ep.builder(&c, "bytes").unwrap();
    let (s0, s1) = (ep.tokenize(0, &b).unwrap(), ep.tokenize(1, &b).unwrap());
    let batch = to_batch(&[&s0, &s1]);
    let dir = std::env::temp_dir().join("gato-device-check-train");
    let cpu_model = GatoTransformer::init(cpu, &c, 5).unwrap();
    checkpoint::save(
        &cpu_model,
        cpu,
        &dir,
        gato_core::DType::F32,
        gato_transformer::atomic_dir::Overwrite::Replace,
    )
    .unwrap();
    let grads = |m: &GatoTransformer, be: &dyn Backend| {
        let (loss, _, g) =
            accumulated_gradients(m, be, &[&batch], EmbeddingMode::Eval, Dropout::OFF).unwrap();
        (loss, AdamW::host_gradients(be, &g).unwrap())
    };
    let (cpu_loss, cpu_grads) = grads(&cpu_model, cpu);
    for (label, dtype, tol) in [
        ("f32", gato_core::DType::F32, 1e-4),
        ("bf16", gato_core::DType::BF16, 2e-2),
    ] {
        let mut m = checkpoint::load(&dir, cuda).unwrap();
        m.cast_block_weights(cuda, dtype).unwrap();
        let (loss, g) = grads(&m, cuda);
        let mut worst = ((loss - cpu_loss).abs() / cpu_loss, "loss".to_string());
        for (name, want) in &cpu_grads {
            let e = rel(&g[name], want);
            if e > worst.0 {
                worst = (e, name.clone());
            }
        }
        let pass = worst.0 < tol;
        ok &= pass;
        rows.push(format!(
            "tiny      train: CUDA {label:>4} vs CPU f32 loss + {} gradients   worst rel err {:.2e} ({})  {}",
            cpu_grads.len(),
            worst.0,
            worst.1,
            if pass { "ok" } else { "FAIL" }
        ));
    }
    let trajectory = |be: &dyn Backend| {
        let m = checkpoint::load(&dir, be).unwrap();
        let mut t = Trainer::new(&m, 10);
        (0..10)
            .map(|_| t.step(be, &batch, EmbeddingMode::Eval).unwrap().loss)
            .collect::<Vec<f64>>()
    };
    let (a, g) = (trajectory(cpu), trajectory(cuda));
    let worst = a
        .iter()
        .zip(&g)
        .map(|(x, y)| (x - y).abs() / x)
        .fold(0.0, f64::max);
    let pass = worst < 1e-3 && g[9] < g[0];
    ok &= pass;
    rows.push(format!(
        "tiny      train: 10-step loss trajectory CUDA vs CPU ({:.3} -> {:.3})   worst rel err {worst:.2e}  {}",
        g[0],
        g[9],
        if pass { "ok" } else { "FAIL" }
    ));
    // Data parallel over NCCL with one rank: the all-reduce path runs and the step equals the plain one.
    match cuda
        .collective_id()
        .and_then(|id| cuda.communicator(&id, 0, 1))
    {
        Ok(comm) => {
            let m = checkpoint::load(&dir, cuda).unwrap();
            let (mut plain, mut dist) = (Trainer::new(&m, 10), Trainer::new(&m, 10));
            drop(m);
            let a = plain.step(cuda, &batch, EmbeddingMode::Eval).unwrap().loss;
            let b = dist
                .step_distributed(
                    cuda,
                    comm.as_ref(),
                    &[&batch],
                    0,
                    EmbeddingMode::Eval,
                    Dropout::OFF,
                )
                .unwrap()
                .loss;
            let p = |t: &Trainer| {
                t.params()
                    .0
                    .values()
                    .flat_map(|x| cuda.download(x).unwrap().into_f32().unwrap())
                    .collect::<Vec<f32>>()
            };
            let e = rel(&p(&dist), &p(&plain)).max((a - b).abs() / a);
            let pass = e < 1e-5;
            ok &= pass;
            rows.push(format!(
                "tiny      train: NCCL world size 1 vs plain step (loss, parameters)   rel err {e:.2e}  {}",
                if pass { "ok" } else { "FAIL" }
            ));
        }
        Err(e) => rows.push(format!("tiny      train: NCCL data parallel SKIPPED: {e}")),
    }
    std::fs::remove_dir_all(&dir).ok();
    ok
}

/// Training-step throughput at 8 × 1024 tokens.
fn training_throughput(cuda: &dyn Backend, peak: f64, rows: &mut Vec<String>) {
    for (name, precision) in [
        ("small", MatmulPrecision::F32),
        ("small", MatmulPrecision::Bf16),
        ("baseline", MatmulPrecision::F32),
        ("baseline", MatmulPrecision::Bf16),
    ] {
        let c = GatoConfig::preset(name).unwrap();
        let model = GatoTransformer::init(cuda, &c, 2).unwrap();
        let batch = random_batch(8, 1024, 5);
        let mut t = Trainer::new(&model, 100);
        drop(model);
        t.set_precision(precision);
        t.step(cuda, &batch, EmbeddingMode::Eval).unwrap();
        cuda.synchronize().unwrap();
        let reps = 3;
        let start = Instant::now();
        for _ in 0..reps {
            t.step(cuda, &batch, EmbeddingMode::Eval).unwrap();
        }
        cuda.synchronize().unwrap();
        let s = start.elapsed().as_secs_f64() / reps as f64;
        let flops = 3.0 * forward_flops(&c);
        rows.push(format!(
            "{name:<9} train step 8x1024 {precision:>4} products: {:.1} ms, {:.0} tokens/s, {:.1} TFLOP/s = {:.1}% MFU of {peak} bf16 peak",
            s * 1e3,
            8192.0 / s,
            flops / s / 1e12,
            100.0 * flops / s / 1e12 / peak
        ));
    }
}

fn random_batch(batch: usize, len: usize, seed: u32) -> TokenBatch {
    let n = batch * len;
    TokenBatch {
        batch,
        seq_len: len,
        lengths: vec![len; batch],
        ids: (0..n as u32)
            .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed)) % 33024)
            .collect(),
        modality: vec![Modality::Continuous; n],
        local_position: (0..n).map(|i| Some((i % 40) as u32)).collect(),
        loss: vec![true; n],
        timestep: (0..n).map(|i| ((i % len) / 44) as u32).collect(),
        patches: vec![],
        patch_positions: vec![],
    }
}

fn main() -> ExitCode {
    let cuda = match create_backend("cuda", &BackendOptions::default()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let cpu: Arc<dyn Backend> = create_backend("cpu", &BackendOptions::default()).unwrap();
    println!("device: {}", cuda.device_description());
    let mut ok = true;
    let mut rows = Vec::new();
    let ep =
        EpisodeFile::open(std::path::Path::new("data/episodes/metaworld.safetensors")).unwrap();
    for name in ["tiny", "small"] {
        let c = GatoConfig::preset(name).unwrap();
        let cpu_model = GatoTransformer::init(cpu.as_ref(), &c, 1).unwrap();
        // Same weights on the GPU: through a checkpoint, as a user would move them.
        let dir = std::env::temp_dir().join(format!("gato-device-check-{name}"));
        checkpoint::save(
            &cpu_model,
            cpu.as_ref(),
            &dir,
            gato_core::DType::F32,
            gato_transformer::atomic_dir::Overwrite::Replace,
        )
        .unwrap();
        let gpu_model = checkpoint::load(&dir, cuda.as_ref()).unwrap();
        let b = ep.builder(&c, "bytes").unwrap();
        let mut seq = ep.tokenize(0, &b).unwrap();
        seq = seq.first_window(256).unwrap().0;
        let batch = to_batch(&[&seq]);
        let e = rel(
            &logits(&gpu_model, cuda.as_ref(), &batch),
            &logits(&cpu_model, cpu.as_ref(), &batch),
        );
        let pass = e < 1e-4;
        ok &= pass;
        rows.push(format!(
            "{name:<9} CUDA vs CPU logits (f32, {} tokens)    rel err {e:.2e}  {}",
            batch.seq_len,
            if pass { "ok" } else { "FAIL" }
        ));
        // bf16 decoder weights on the GPU (tensor-core GEMMs, f32 accumulation) against the f32 CPU logits.
        let mut bf16_model = checkpoint::load(&dir, cuda.as_ref()).unwrap();
        bf16_model
            .cast_block_weights(cuda.as_ref(), gato_core::DType::BF16)
            .unwrap();
        let e = rel(
            &logits(&bf16_model, cuda.as_ref(), &batch),
            &logits(&cpu_model, cpu.as_ref(), &batch),
        );
        let pass = e < 2e-2;
        ok &= pass;
        rows.push(format!(
            "{name:<9} CUDA bf16 weights vs CPU f32 logits      rel err {e:.2e}  {}",
            if pass { "ok" } else { "FAIL" }
        ));
        // KV cache on the GPU.
        let mut st = DecodeState::new(&gpu_model);
        let mut inc = Vec::new();
        for t in 0..batch.seq_len {
            let h = st
                .push(
                    &gpu_model,
                    cuda.as_ref(),
                    &batch.slice_single(t..t + 1).unwrap(),
                )
                .unwrap();
            inc = last_logits(&gpu_model, cuda.as_ref(), &h).unwrap();
        }
        let full = logits(&gpu_model, cuda.as_ref(), &batch);
        let v = 33025;
        let e = rel(&inc, &full[(batch.seq_len - 1) * v..]);
        let pass = e < 1e-4;
        ok &= pass;
        rows.push(format!(
            "{name:<9} KV-cache decode vs full forward (CUDA)   rel err {e:.2e}  {}",
            if pass { "ok" } else { "FAIL" }
        ));
        std::fs::remove_dir_all(&dir).ok();
    }
    ok &= training_checks(cpu.as_ref(), cuda.as_ref(), &mut rows);
    let peak: f64 = std::env::var("GATO_PEAK_TFLOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(989.0);
    for (name, dtype) in [
        ("small", gato_core::DType::F32),
        ("small", gato_core::DType::BF16),
        ("baseline", gato_core::DType::F32),
        ("baseline", gato_core::DType::BF16),
    ] {
        let c = GatoConfig::preset(name).unwrap();
        let mut model = GatoTransformer::init(cuda.as_ref(), &c, 2).unwrap();
        model.cast_block_weights(cuda.as_ref(), dtype).unwrap();
        let batch = random_batch(8, 1024, 3);
        let h = model
            .hidden(cuda.as_ref(), &batch, gato_core::EmbeddingMode::Eval)
            .unwrap();
        drop(model.logits_of(cuda.as_ref(), &h).unwrap());
        cuda.synchronize().unwrap();
        let reps = 3;
        let t = Instant::now();
        for _ in 0..reps {
            let h = model
                .hidden(cuda.as_ref(), &batch, gato_core::EmbeddingMode::Eval)
                .unwrap();
            drop(model.logits_of(cuda.as_ref(), &h).unwrap());
        }
        cuda.synchronize().unwrap();
        let s = t.elapsed().as_secs_f64() / reps as f64;
        let flops = forward_flops(&c);
        rows.push(format!("{name:<9} forward 8x1024 {dtype:>4} weights: {:.1} ms, {:.0} tokens/s, {:.1} TFLOP/s = {:.1}% of {peak} bf16 peak", s * 1e3, 8192.0 / s, flops / s / 1e12, 100.0 * flops / s / 1e12 / peak));
        let mut st = DecodeState::new(&model);
        let prompt = random_batch(1, 512, 4);
        st.push(&model, cuda.as_ref(), &prompt).unwrap();
        let t = Instant::now();
        let steps = 32;
        for i in 0..steps {
            let h = st
                .push(&model, cuda.as_ref(), &single_token(32000 + i, 99, None))
                .unwrap();
            let _ = last_logits(&model, cuda.as_ref(), &h).unwrap();
        }
        let ms = t.elapsed().as_secs_f64() / steps as f64 * 1e3;
        rows.push(format!(
            "{name:<9} decode with KV cache (512-token context), {dtype:>4} weights: {ms:.2} ms per action token"
        ));
    }
    training_throughput(cuda.as_ref(), peak, &mut rows);
    println!("\n{}", rows.join("\n"));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
