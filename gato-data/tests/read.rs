//! The reader against files the Python writer produced: bit-exact round trip of every modality, every bundled
//! environment readable and tokenizable, BabyAI in the design.md §4 order, and corrupt files as errors, never panics.

use std::path::{Path, PathBuf};

use gato_core::{GatoConfig, Modality};
use gato_data::{DataError, EpisodeFile};
use gato_tokenizers::FieldValue;
use proptest::prelude::*;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The committed fixture, and the one CI regenerates with the current Python writer (if present).
fn fixtures() -> Vec<PathBuf> {
    let mut v = vec![root().join("data/fixtures")];
    let regenerated = root().join(".cache/fixtures");
    if regenerated.join("all_modalities.json").is_file() {
        v.push(regenerated);
    } else if std::env::var_os("CI").is_some() {
        panic!("CI must regenerate the fixture with tools/record/make_fixture.py .cache/fixtures");
    }
    v
}

fn bits(v: &[f32]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits() as u64).collect()
}

#[test]
fn python_writer_round_trip_is_bit_exact_for_every_modality() {
    for dir in fixtures() {
        let file = EpisodeFile::open(&dir.join("all_modalities.safetensors")).unwrap();
        let expect: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("all_modalities.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(file.env_id(), expect["env_id"]);
        let eps = expect["episodes"].as_array().unwrap();
        assert_eq!(file.len(), eps.len());
        for (i, want) in eps.iter().enumerate() {
            let steps = file.timesteps(i).unwrap();
            let rewards = file.rewards(i).unwrap();
            let u64s = |v: &serde_json::Value, k: &str| -> Vec<u64> {
                v[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap())
                    .collect()
            };
            assert_eq!(
                bits(&rewards),
                u64s(&want["rewards"], "bits"),
                "{dir:?} ep {i} rewards"
            );
            let (mut text, mut img, mut disc, mut cont, mut da, mut ca) =
                (vec![], vec![], vec![], vec![], vec![], vec![]);
            for s in &steps {
                match &s.observations["text_observations"] {
                    FieldValue::Text(t) => text.push(serde_json::Value::String(t.clone())),
                    other => panic!("{other:?}"),
                }
                match &s.observations["image_observations"] {
                    FieldValue::Image(im) => match &im.pixels {
                        gato_tokenizers::ImagePixels::U8(p) => {
                            img.extend(p.iter().map(|&b| b as i64))
                        }
                        other => panic!("{other:?}"),
                    },
                    other => panic!("{other:?}"),
                }
                if let FieldValue::Discrete(v) = &s.observations["discrete_observations"] {
                    disc.extend(v.iter().copied());
                }
                if let FieldValue::Continuous(v) = &s.observations["continuous_observations"] {
                    cont.extend(bits(v));
                }
                if let FieldValue::Discrete(v) = &s.actions["discrete_actions"] {
                    da.extend(v.iter().copied());
                }
                if let FieldValue::Continuous(v) = &s.actions["continuous_actions"] {
                    ca.extend(bits(v));
                }
            }
            let i64s = |k: &str| -> Vec<i64> {
                want[k]["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap())
                    .collect()
            };
            assert_eq!(serde_json::Value::Array(text), want["text_observations"]);
            assert_eq!(img, i64s("image_observations"));
            assert_eq!(disc, i64s("discrete_observations"));
            assert_eq!(
                cont,
                u64s(&want["continuous_observations"], "bits"),
                "continuous bits, incl. -0.0 and subnormals"
            );
            assert_eq!(da, i64s("discrete_actions"));
            assert_eq!(ca, u64s(&want["continuous_actions"], "bits"));
        }
    }
}

#[test]
fn every_bundled_environment_reads_and_tokenizes() {
    let dir = root().join("data/episodes");
    let mut envs = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = EpisodeFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let builder = file.builder(&GatoConfig::small(), "bytes").unwrap();
        for i in 0..file.len() {
            let seq = file.tokenize(i, &builder).unwrap();
            let t = file.episodes()[i].length;
            assert_eq!(seq.timestep_starts.len(), t);
            let separators = seq
                .tokens
                .iter()
                .filter(|x| x.modality == Modality::Separator)
                .count();
            assert_eq!(separators, t, "{path:?} ep {i}");
            assert_eq!(
                seq.tokens
                    .iter()
                    .filter(|x| x.loss && x.modality != Modality::Text)
                    .count(),
                t * builder.action_tokens()
            );
        }
        envs.push(file.env_id().to_string());
    }
    envs.sort();
    for want in [
        "ALE/Breakout-v5",
        "BabyAI-GoToLocal-v0",
        "CartPole-v1",
        "Meta-World/MT1/reach-v3",
        "Pendulum-v1",
    ] {
        assert!(
            envs.iter().any(|e| e == want),
            "{want} missing from {envs:?}"
        );
    }
}

#[test]
fn babyai_timestep_is_mission_grid_separator_action() {
    let file = EpisodeFile::open(&root().join("data/episodes/babyai.safetensors")).unwrap();
    let builder = file.builder(&GatoConfig::small(), "bytes").unwrap();
    let steps = file.timesteps(0).unwrap();
    let seq = file.tokenize(0, &builder).unwrap();
    let FieldValue::Text(mission) = &steps[0].observations["text_observations"] else {
        panic!()
    };
    let FieldValue::Discrete(grid) = &steps[0].observations["discrete_observations"] else {
        panic!()
    };
    let FieldValue::Discrete(action) = &steps[0].actions["discrete_actions"] else {
        panic!()
    };
    let t0: Vec<_> = seq.tokens[seq.timestep_range(0)].to_vec();
    let n = mission.len();
    assert!(mission.starts_with("go to"), "{mission}");
    assert_eq!(t0.len(), n + 148 + 1 + 1);
    assert!(t0[..n]
        .iter()
        .zip(mission.bytes())
        .all(|(t, b)| t.modality == Modality::Text && t.id == b as u32 && t.loss));
    assert!(t0[n..n + 148]
        .iter()
        .zip(grid)
        .all(|(t, &g)| t.modality == Modality::Discrete && t.id == g as u32 && !t.loss));
    assert_eq!(t0[n + 148].modality, Modality::Separator);
    assert_eq!(t0[n + 148].id, 33024);
    assert_eq!(t0[n + 149].id, action[0] as u32);
    assert!(t0[n + 149].loss);
    assert_eq!(t0[n + 147].local_position, Some((n + 147) as u32));
}

fn fixture_bytes() -> Vec<u8> {
    std::fs::read(root().join("data/fixtures/all_modalities.safetensors")).unwrap()
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = fixture_bytes();
    for cut in 0..bytes.len() {
        match EpisodeFile::from_bytes(bytes[..cut].to_vec(), "truncated.safetensors") {
            Err(e) => assert!(e.to_string().starts_with("truncated.safetensors"), "{e}"),
            Ok(_) => panic!(
                "a {cut}-byte prefix of a {}-byte file was accepted",
                bytes.len()
            ),
        }
    }
    assert!(EpisodeFile::from_bytes(bytes, "whole").is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    /// Random byte flips: an error or a file that passed every check — never a panic.
    #[test]
    fn byte_flips_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4)) {
        let mut bytes = fixture_bytes();
        let n = bytes.len();
        for (at, x) in flips {
            bytes[at.index(n)] ^= x;
        }
        if let Ok(f) = EpisodeFile::from_bytes(bytes, "flipped") {
            for i in 0..f.len() {
                f.timesteps(i).unwrap();
            }
        }
    }
}

/// Rebuild a file with edited metadata through the safetensors writer.
fn with_metadata(edit: impl Fn(&mut std::collections::HashMap<String, String>)) -> Vec<u8> {
    let bytes = fixture_bytes();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    edit(&mut meta);
    let tensors: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    safetensors::serialize(tensors, Some(meta)).unwrap()
}

#[test]
fn metadata_problems_name_file_and_field() {
    type Edit = Box<dyn Fn(&mut std::collections::HashMap<String, String>)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|m| {
                m.insert("version".into(), "2".into());
            }),
            "version \"2\" is not supported",
        ),
        (
            Box::new(|m| {
                m.remove("fields");
            }),
            "`fields` is missing",
        ),
        (
            Box::new(|m| {
                m.insert("format".into(), "other".into());
            }),
            "expected \"gato-episodes\"",
        ),
        (
            Box::new(|m| {
                let f = m["fields"].replace("\"num_values\": 18", "\"num_values\": 4");
                m.insert("fields".into(), f);
            }),
            "field `discrete_actions`",
        ),
        (
            Box::new(|m| {
                let f = m["episodes"].replacen("\"length\": 3", "\"length\": 4", 1);
                m.insert("episodes".into(), f);
            }),
            "episode 0",
        ),
        (
            Box::new(|m| {
                let f = m["fields"].replace("\"float32\"", "\"int64\"");
                m.insert("fields".into(), f);
            }),
            "dtype",
        ),
        (
            Box::new(|m| {
                let e = m["episodes"].replacen("}]", "}, {\"length\": 2, \"return\": 0.0}]", 1);
                m.insert("episodes".into(), e);
            }),
            "episode 2",
        ),
    ];
    for (edit, needle) in cases {
        let err = EpisodeFile::from_bytes(with_metadata(edit), "edited.safetensors")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("edited.safetensors") && err.contains(needle),
            "expected {needle:?} in: {err}"
        );
    }
}

#[test]
fn missing_file_and_episode_index_are_errors() {
    let err = EpisodeFile::open(Path::new("/nonexistent/x.safetensors")).unwrap_err();
    assert!(
        matches!(err, DataError::Io { .. })
            && err.to_string().contains("/nonexistent/x.safetensors")
    );
    let file = EpisodeFile::open(&root().join("data/fixtures/all_modalities.safetensors")).unwrap();
    let err = file.timesteps(9).unwrap_err().to_string();
    assert!(
        err.contains("episode 9 requested, the file holds 2"),
        "{err}"
    );
}
