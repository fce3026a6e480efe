//! GPU end-to-end checks and benchmark, run by `gato-cuda/scripts/device-check.sh` on a machine with a GPU.
//!
//! 1. CUDA logits vs CPU logits on a real bundled episode for `tiny` and `small` (f32: relative error < 1e-4;
//!    bf16 decoder weights on CUDA against the f32 CPU logits: < 2e-2).
//! 2. KV-cache decoding on CUDA equals the full forward (< 1e-4).
//! 3. Forward tokens/s for `small` and `baseline` at batch 8 × 1024 tokens (f32 and bf16 weights), model FLOP
//!    utilisation against the bf16 peak given in `GATO_PEAK_TFLOPS` (default 989, H100/H200 SXM dense bf16), and
//!    the per-token decode latency with the KV cache. Prints a table last; exits non-zero if a check fails.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use gato_core::{create_backend, Backend, BackendOptions, GatoConfig, Modality, TokenBatch};
use gato_cuda as _;
use gato_data::EpisodeFile;
use gato_tokenizers::to_batch;
use gato_transformer::checkpoint;
use gato_transformer::{last_logits, single_token, DecodeState, GatoTransformer};

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
        let params = gato_transformer::count_parameters(&c)
            .unwrap()
            .transformer_blocks as f64;
        let (l, w, hk) = (1024.0, c.layer_width as f64, c.attention_width() as f64);
        let flops = 8.0
            * (2.0 * params * l
                + 2.0 * 2.0 * c.num_transformer_blocks as f64 * l * l * hk / 2.0
                + 2.0 * l * w * 33025.0);
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
    println!("\n{}", rows.join("\n"));
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
