//! Mixed precision (design.md §8): training with bf16 products tracks f32 training. The bf16 path runs on the CPU
//! here (it rounds the block weights and `dy` exactly as a GPU run does, without the GPU's speed), so its numerics
//! are checked on every machine: gradients within 2e-2 of f32 (norm-relative, per parameter), and a 10-step loss
//! trajectory within 2% of f32's.

use std::path::Path;

use gato_core::{Backend, DType, EmbeddingMode, GatoConfig, MatmulPrecision, TokenBatch};
use gato_data::EpisodeFile;
use gato_tokenizers::to_batch;
use gato_train::{accumulated_gradients, effective_precision, AdamW, Trainer};
use gato_transformer::{Dropout, GatoTransformer};

fn setup() -> (GatoConfig, TokenBatch) {
    let mut c = GatoConfig::tiny();
    c.training.warmup_steps = 2;
    c.training.learning_rate = 3e-3;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/episodes/babyai.safetensors");
    let file = EpisodeFile::open(&path).unwrap();
    let builder = file.builder(&c, "bytes").unwrap();
    let (a, b) = (
        file.tokenize(0, &builder).unwrap(),
        file.tokenize(1, &builder).unwrap(),
    );
    (c, to_batch(&[&a, &b]))
}

fn losses(
    be: &dyn Backend,
    model: &GatoTransformer,
    batch: &TokenBatch,
    p: MatmulPrecision,
) -> Vec<f64> {
    let mut t = Trainer::new(model, 10);
    t.set_precision(p);
    (0..10)
        .map(|_| t.step(be, batch, EmbeddingMode::Eval).unwrap().loss)
        .collect()
}

#[test]
fn bf16_products_track_f32_training() {
    let be = gato_cpu::CpuBackend::new(Some(2)).unwrap();
    let (c, batch) = setup();
    let model = GatoTransformer::init(&be, &c, 3).unwrap();
    // The CPU has no fast bf16 products: a run asking for bf16 trains in f32 there.
    assert_eq!(
        effective_precision(&be, MatmulPrecision::Bf16),
        MatmulPrecision::F32
    );
    assert_eq!(
        effective_precision(&be, MatmulPrecision::F32),
        MatmulPrecision::F32
    );

    let (l32, _, g32) =
        accumulated_gradients(&model, &be, &[&batch], EmbeddingMode::Eval, Dropout::OFF).unwrap();
    let mut half = GatoTransformer::init(&be, &c, 3).unwrap();
    half.cast_block_weights(&be, DType::BF16).unwrap();
    let (l16, _, g16) =
        accumulated_gradients(&half, &be, &[&batch], EmbeddingMode::Eval, Dropout::OFF).unwrap();
    assert!(
        (l32 - l16).abs() <= 2e-2 * l32,
        "loss f32 {l32} vs bf16 {l16}"
    );
    let (h32, h16) = (
        AdamW::host_gradients(&be, &g32).unwrap(),
        AdamW::host_gradients(&be, &g16).unwrap(),
    );
    assert_eq!(h32.len(), h16.len());
    for (name, a) in &h32 {
        let b = &h16[name];
        let diff: f64 = a
            .iter()
            .zip(b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        assert!(
            diff <= 2e-2 * norm + 1e-9,
            "{name}: |bf16 − f32| = {diff:.3e}, |f32| = {norm:.3e}"
        );
    }

    let (a, b) = (
        losses(&be, &model, &batch, MatmulPrecision::F32),
        losses(&be, &model, &batch, MatmulPrecision::Bf16),
    );
    println!("f32  {a:.4?}\nbf16 {b:.4?}");
    assert_ne!(
        a, b,
        "the bf16 run computed exactly what f32 did: the rounding never happened"
    );
    assert!(a[9] < 0.9 * a[0], "f32 training did not learn: {a:?}");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 2e-2 * x,
            "step {i}: f32 loss {x} vs bf16 {y}"
        );
    }
}
