//! Training end to end on real data: the `tiny` model memorises one batch of the bundled BabyAI episodes (the loss
//! falls from ln 33025 ≈ 10.4 to below 0.05 nats), the parameters it trained load as a model, and the weight
//! decay rule is the stated one.

use std::path::Path;

use gato_core::{EmbeddingMode, GatoConfig};
use gato_data::EpisodeFile;
use gato_tokenizers::to_batch;
use gato_train::{decays, Trainer};
use gato_transformer::GatoTransformer;

#[test]
fn tiny_memorises_one_batch() {
    let be = gato_cpu::CpuBackend::new(Some(2)).unwrap();
    let mut c = GatoConfig::tiny();
    c.training.warmup_steps = 5;
    c.training.initial_learning_rate = 1e-3;
    c.training.learning_rate = 1e-2;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/episodes/babyai.safetensors");
    let file = EpisodeFile::open(&path).unwrap();
    let builder = file.builder(&c, "bytes").unwrap();
    let (a, b) = (
        file.tokenize(2, &builder).unwrap(),
        file.tokenize(3, &builder).unwrap(),
    );
    let batch = to_batch(&[&a, &b]);
    let model = GatoTransformer::init(&be, &c, 0).unwrap();
    let steps = 150;
    let mut trainer = Trainer::new(&model, steps);
    let mut first = None;
    let mut last = f64::INFINITY;
    for _ in 0..steps {
        let r = trainer.step(&be, &batch, EmbeddingMode::Eval).unwrap();
        first.get_or_insert(r.loss);
        assert!(r.grad_norm.is_finite() && r.lr > 0.0);
        last = r.loss;
        if last < 0.05 {
            break;
        }
    }
    let first = first.unwrap();
    println!("loss {first:.3} -> {last:.4} in {} steps", trainer.steps());
    assert!(
        first > 9.0,
        "an untrained model starts near ln 33025: {first}"
    );
    assert!(
        last < 0.05,
        "tiny did not memorise one batch: loss {last} after {} steps",
        trainer.steps()
    );
    // The trained parameters are a model whose loss is what training reached.
    let trained = trainer.model().unwrap();
    assert!(trained.loss(&be, &batch).unwrap().loss < 0.1);
    // Matrices and tables are decayed; biases and norm parameters are not.
    for (name, t) in trainer.params().0.iter() {
        let want = !(name.ends_with(".bias") || name.contains("ln") || name.contains("norm"));
        assert_eq!(decays(t), want, "{name}");
    }
}
