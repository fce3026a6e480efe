//! The training data pipeline on the bundled episodes: tasks per environment, a held-out split by episode,
//! windows of whole timesteps within `L`, prompts on about a quarter of the sequences, mixing weights, seeded
//! determinism, and the errors that must stop a run before its first step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gato_core::{GatoConfig, Modality};
use gato_data::pipeline::rng;
use gato_data::{Dataset, TaskWeights};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/episodes")
        .join(name)
}

fn dataset(names: &[&str], c: &GatoConfig) -> gato_data::Result<Dataset> {
    let paths: Vec<PathBuf> = names.iter().map(|n| data(n)).collect();
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    Dataset::from_files(&refs, c, "bytes", 0.1)
}

#[test]
fn tasks_split_windows_prompts_mixing_and_determinism() {
    let c = GatoConfig::tiny();
    let ds = dataset(
        &[
            "cartpole.safetensors",
            "babyai.safetensors",
            "pendulum.safetensors",
        ],
        &c,
    )
    .unwrap();
    let names: Vec<&str> = ds.tasks.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["BabyAI-GoToLocal-v0", "CartPole-v1", "Pendulum-v1"]);
    // Held out by episode: 6 BabyAI episodes → 5 + 1; 2 CartPole → 1 + 1.
    let split: Vec<(usize, usize)> = ds
        .tasks
        .iter()
        .map(|t| (t.train.len(), t.validation.len()))
        .collect();
    assert_eq!(split, [(5, 1), (1, 1), (1, 1)]);
    // The same seed gives the same batch.
    let (a, b) = (ds.batch(4, &mut rng(7)), ds.batch(4, &mut rng(7)));
    assert_eq!(a.ids, b.ids);
    assert_ne!(a.ids, ds.batch(4, &mut rng(8)).ids);
    // Every sequence fits L, and its window starts on a timestep boundary.
    let mut prompted = 0;
    let mut by_room: HashMap<bool, usize> = HashMap::new();
    let n = 2000;
    let mut r = rng(1);
    for _ in 0..n {
        let s = ds.sample(&mut r);
        assert!(s.len() <= c.token_sequence_length);
        let first = s.tokens.iter().position(|t| !t.prompt).unwrap();
        assert!(
            s.timestep_starts.contains(&first),
            "window starts mid-timestep"
        );
        assert!(
            s.tokens[..first].iter().all(|t| !t.loss),
            "prompt tokens are never targets"
        );
        // A prompt needs room: count the windows that leave at least half the context free.
        let room = s.len() - first <= c.token_sequence_length / 2;
        *by_room.entry(room).or_default() += 1;
        if room && first > 0 {
            prompted += 1;
        }
    }
    // About a quarter of the sequences with room carry a prompt (a window that fills the context has none).
    let with_room = by_room[&true] as f64;
    let frac = prompted as f64 / with_room;
    assert!((0.18..0.32).contains(&frac), "prompted fraction {frac}");
    // Mixing: by training tokens by default; uniform; a weight of zero removes a task.
    let mut ds = ds;
    let tokens: Vec<f64> = ds.tasks.iter().map(|t| t.weight).collect();
    ds.set_weights(&"uniform".parse::<TaskWeights>().unwrap())
        .unwrap();
    assert!(ds.tasks.iter().all(|t| t.weight == 1.0));
    ds.set_weights(&TaskWeights::Tokens).unwrap();
    assert_eq!(
        ds.tasks.iter().map(|t| t.weight).collect::<Vec<_>>(),
        tokens
    );
    let names: Vec<String> = ds.tasks.iter().map(|t| t.name.clone()).collect();
    let only_babyai = names
        .iter()
        .map(|n| format!("{n}={}", if n.starts_with("BabyAI") { 1 } else { 0 }))
        .collect::<Vec<_>>()
        .join(",");
    ds.set_weights(&only_babyai.parse::<TaskWeights>().unwrap())
        .unwrap();
    // A bad spec leaves the weights as they were.
    let before: Vec<f64> = ds.tasks.iter().map(|t| t.weight).collect();
    assert!(ds
        .set_weights(&"babyai=1".parse::<TaskWeights>().unwrap())
        .is_err());
    assert_eq!(
        ds.tasks.iter().map(|t| t.weight).collect::<Vec<_>>(),
        before
    );
    let mut r = rng(2);
    assert!((0..200).all(|_| ds
        .sample(&mut r)
        .tokens
        .iter()
        .any(|t| t.modality == Modality::Text)));
    // Validation batches: one per task with held-out episodes, no prompts.
    let val = ds.validation();
    assert_eq!(val.len(), 3);
    assert!(val.iter().all(|(_, seqs)| !seqs.is_empty()));
}

#[test]
fn bad_inputs_stop_before_training() {
    let c = GatoConfig::tiny();
    let e = Dataset::from_files(&[], &c, "bytes", 0.1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no episode files"), "{e}");
    let e = dataset(&["no-such.safetensors"], &c)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-such.safetensors"), "{e}");
    // A timestep longer than the context.
    let mut short = GatoConfig::tiny();
    short.token_sequence_length = 16;
    let e = dataset(&["babyai.safetensors"], &short)
        .unwrap_err()
        .to_string();
    assert!(e.contains("episode 0") && e.contains("16"), "{e}");
    // Two files of one environment whose fields differ: CartPole's data relabelled as BabyAI.
    let bytes = std::fs::read(data("cartpole.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"]["env_id"] = "BabyAI-GoToLocal-v0".into();
    let h = header.to_string();
    let pad = (8 - h.len() % 8) % 8;
    let h = h + &" ".repeat(pad);
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    let dir = std::env::temp_dir().join(format!("gato-data-pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("fake-babyai.safetensors");
    std::fs::write(&fake, out).unwrap();
    let real = data("babyai.safetensors");
    let e = Dataset::from_files(&[real.as_path(), fake.as_path()], &c, "bytes", 0.1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fake-babyai") && e.contains("other fields or actions"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
