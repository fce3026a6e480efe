//! Gradient accumulation: the loss and gradients over micro-batches equal those of one batch holding all their
//! sequences (each micro-batch's mean weighted by its share of the targets), to f32 rounding.

use std::path::Path;

use gato_core::{EmbeddingMode, GatoConfig};
use gato_data::EpisodeFile;
use gato_tokenizers::to_batch;
use gato_train::{accumulated_gradients, AdamW};
use gato_transformer::{Dropout, GatoTransformer};

#[test]
fn micro_batches_add_up_to_the_whole_batch() {
    let be = gato_cpu::CpuBackend::new(Some(2)).unwrap();
    let c = GatoConfig::tiny();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/episodes/babyai.safetensors");
    let file = EpisodeFile::open(&path).unwrap();
    let builder = file.builder(&c, "bytes").unwrap();
    let seqs: Vec<_> = (0..3)
        .map(|i| file.tokenize(i, &builder).unwrap())
        .collect();
    let model = GatoTransformer::init(&be, &c, 4).unwrap();
    let whole = to_batch(&[&seqs[0], &seqs[1], &seqs[2]]);
    let (a, b) = (to_batch(&[&seqs[0]]), to_batch(&[&seqs[1], &seqs[2]]));
    let mode = EmbeddingMode::Eval;
    let (l1, n1, g1) = accumulated_gradients(&model, &be, &[&whole], mode, Dropout::OFF).unwrap();
    let (l2, n2, g2) = accumulated_gradients(&model, &be, &[&a, &b], mode, Dropout::OFF).unwrap();
    assert_eq!(n1, n2);
    assert!((l1 - l2).abs() < 1e-5 * l1, "loss {l1} vs accumulated {l2}");
    assert_eq!(g1.len(), g2.len());
    let (g1, g2) = (
        AdamW::host_gradients(&be, &g1).unwrap(),
        AdamW::host_gradients(&be, &g2).unwrap(),
    );
    for (name, x) in &g1 {
        let y = &g2[name];
        let diff: f64 = x
            .iter()
            .zip(y)
            .map(|(p, q)| ((p - q) as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
        assert!(
            diff <= 1e-4 * norm + 1e-9,
            "{name}: ‖Δ‖ {diff:e} vs ‖g‖ {norm:e}"
        );
    }
}
