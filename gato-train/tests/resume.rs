//! Resuming from a training checkpoint continues bit for bit: 8 straight steps equal 4 steps, save, load, 4 steps,
//! parameter for parameter; a checkpoint without its optimiser state, or with a mismatched one, is a clear error.

use std::path::Path;

use gato_core::{Backend, EmbeddingMode, GatoConfig, TokenBatch};
use gato_data::EpisodeFile;
use gato_tokenizers::to_batch;
use gato_train::checkpoint::{load, save, OPTIMIZER_FILE};
use gato_train::Trainer;
use gato_transformer::atomic_dir::Overwrite;
use gato_transformer::GatoTransformer;

fn setup(be: &dyn Backend) -> (GatoTransformer, TokenBatch) {
    let mut c = GatoConfig::tiny();
    c.training.warmup_steps = 3;
    c.training.learning_rate = 1e-2;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/episodes/cartpole.safetensors");
    let file = EpisodeFile::open(&path).unwrap();
    let builder = file.builder(&c, "bytes").unwrap();
    let (seq, _) = file
        .tokenize(0, &builder)
        .unwrap()
        .first_window(200)
        .unwrap();
    (GatoTransformer::init(be, &c, 1).unwrap(), to_batch(&[&seq]))
}

fn bits(be: &dyn Backend, t: &Trainer) -> Vec<(String, Vec<u32>)> {
    t.params()
        .0
        .iter()
        .map(|(n, p)| {
            let v = be.download(p).unwrap().into_f32().unwrap();
            (n.clone(), v.iter().map(|x| x.to_bits()).collect())
        })
        .collect()
}

#[test]
fn resume_continues_bit_for_bit() {
    let be = gato_cpu::CpuBackend::new(Some(2)).unwrap();
    let (model, batch) = setup(&be);
    let mode = EmbeddingMode::Eval;
    let mut straight = Trainer::new(&model, 8);
    for _ in 0..8 {
        straight.step(&be, &batch, mode).unwrap();
    }
    let dir = std::env::temp_dir().join(format!("gato-train-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ck = dir.join("ckpt");
    let mut first = Trainer::new(&model, 8);
    for _ in 0..4 {
        first.step(&be, &batch, mode).unwrap();
    }
    save(&first, &be, &ck, Overwrite::Refuse).unwrap();
    let mut resumed = load(&ck, &be, 8).unwrap();
    assert_eq!(resumed.steps(), 4);
    let mut losses = Vec::new();
    for _ in 0..4 {
        losses.push(resumed.step(&be, &batch, mode).unwrap().loss);
    }
    assert_eq!(resumed.steps(), 8);
    assert!(
        bits(&be, &straight) == bits(&be, &resumed),
        "resumed parameters differ from a straight run"
    );
    assert!(
        losses.windows(2).all(|w| w[1] < w[0]),
        "the loss keeps falling: {losses:?}"
    );
    // The checkpoint is an ordinary model checkpoint too.
    gato_transformer::checkpoint::load(&ck, &be).unwrap();
    // Missing or mismatched optimiser state: clear errors naming the file.
    std::fs::remove_file(ck.join(OPTIMIZER_FILE)).unwrap();
    let e = load(&ck, &be, 8).unwrap_err().to_string();
    assert!(e.contains(OPTIMIZER_FILE), "{e}");
    let other = GatoTransformer::init(&be, &GatoConfig::tiny(), 1).unwrap();
    let mut t = Trainer::new(&other, 8);
    t.step(&be, &batch, mode).unwrap();
    save(&t, &be, &dir.join("b"), Overwrite::Refuse).unwrap();
    let mut c2 = GatoConfig::tiny();
    c2.feedforward_hidden_size = 128;
    c2.save(&dir.join("b").join("config.json")).unwrap();
    let e = load(&dir.join("b"), &be, 8).unwrap_err().to_string();
    assert!(e.contains("ff.in.weight"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
