//! The sequence builder (design.md §4): canonical order, local positions, loss mask, separator, windows, prompts,
//! action round trips, and bad input.

use std::collections::BTreeMap;

use gato_core::{ActionLocalPosition, GatoConfig, Modality};
use gato_tokenizers::{
    EnvSpec, FieldKind, FieldSpec, FieldValue, Image, SequenceBuilder, Timestep, TokenSequence,
};
use proptest::prelude::*;
use rand::SeedableRng;

fn field(key: &str, kind: FieldKind, shape: &[usize]) -> FieldSpec {
    FieldSpec {
        key: key.into(),
        kind,
        shape: shape.to_vec(),
    }
}

/// Fields declared out of canonical order on purpose.
fn spec() -> EnvSpec {
    EnvSpec {
        observations: vec![
            field(
                "z_speed",
                FieldKind::Continuous {
                    mu_law: true,
                    bounds: None,
                },
                &[2],
            ),
            field("camera", FieldKind::Image { channels: 3 }, &[32, 16, 3]),
            field("a_grid", FieldKind::Discrete { num_values: 11 }, &[2, 2]),
            field(
                "mission",
                FieldKind::Text {
                    tokenizer: "bytes".into(),
                },
                &[],
            ),
        ],
        actions: vec![
            field("move", FieldKind::Discrete { num_values: 7 }, &[]),
            field(
                "arm",
                FieldKind::Continuous {
                    mu_law: false,
                    bounds: Some((-1.0, 1.0)),
                },
                &[2],
            ),
        ],
    }
}

fn image(seed: u8) -> FieldValue {
    FieldValue::Image(Image {
        height: 32,
        width: 16,
        channels: 3,
        pixels: gato_tokenizers::ImagePixels::U8(
            (0..32 * 16 * 3)
                .map(|i| (i as u8).wrapping_mul(seed))
                .collect(),
        ),
    })
}

fn step(t: usize) -> Timestep {
    let mut o = BTreeMap::new();
    o.insert("mission".into(), FieldValue::Text("go".into()));
    o.insert("camera".into(), image(t as u8 + 1));
    o.insert(
        "a_grid".into(),
        FieldValue::Discrete(vec![0, 3, 10, t as i64 % 11]),
    );
    o.insert("z_speed".into(), FieldValue::Continuous(vec![0.0, -1.0]));
    let mut a = BTreeMap::new();
    a.insert("move".into(), FieldValue::Discrete(vec![(t % 7) as i64]));
    a.insert("arm".into(), FieldValue::Continuous(vec![0.5, -0.25]));
    Timestep {
        observations: o,
        actions: a,
    }
}

fn modalities(seq: &TokenSequence) -> Vec<Modality> {
    seq.tokens.iter().map(|t| t.modality).collect()
}

#[test]
fn canonical_order_local_positions_and_loss_mask() {
    let b = SequenceBuilder::new(&GatoConfig::tiny(), &spec()).unwrap();
    assert_eq!(
        b.observation_keys(),
        ["mission", "camera", "a_grid", "z_speed"]
    );
    assert_eq!(b.action_keys(), ["arm", "move"]);
    let seq = b.episode(&[step(0), step(1)]).unwrap();
    use Modality::*;
    let one: Vec<Modality> = [
        vec![Text; 2],
        vec![Image; 2],
        vec![Discrete; 4],
        vec![Continuous; 2],
        vec![Separator],
        vec![Continuous; 2],
        vec![Discrete],
    ]
    .concat();
    assert_eq!(modalities(&seq), [one.clone(), one].concat());
    assert_eq!(seq.timestep_starts, vec![0, 14]);
    let t0 = &seq.tokens[..14];
    // Text: bytes of "go"; grid: discrete values with offset 0; z_speed: mu-law tokens of 0 and −1.
    let ids: Vec<u32> = t0.iter().map(|t| t.id).collect();
    assert_eq!(&ids[..2], &[b'g' as u32, b'o' as u32]);
    assert_eq!(&ids[4..8], &[0, 3, 10, 0]);
    assert_eq!(&ids[8..10], &[32512, 32279]);
    assert_eq!(ids[10], 33024);
    assert_eq!(ids[13], 0); // move = 0 at t = 0
                            // Local positions count observation tokens only.
    let local: Vec<Option<u32>> = t0.iter().map(|t| t.local_position).collect();
    assert_eq!(&local[..10], &(0..10).map(Some).collect::<Vec<_>>()[..]);
    assert!(local[10..].iter().all(|l| l.is_none()));
    // Loss mask: text and actions only.
    let loss: Vec<bool> = t0.iter().map(|t| t.loss).collect();
    assert_eq!(
        loss,
        [vec![true; 2], vec![false; 9], vec![true; 3]].concat()
    );
    // Patches: two per camera frame, raster order, with positions.
    assert_eq!(seq.patches.len(), 4 * 16 * 16 * 3);
    let p = t0[3].patch_position.unwrap();
    assert_eq!((p.row, p.rows, p.col, p.cols), (1, 2, 0, 1));
    assert_eq!(
        seq.tokens[14 + 2].id,
        2,
        "patch ids continue across timesteps"
    );
}

#[test]
fn separator_target_and_shared_action_position_are_configurable() {
    let mut c = GatoConfig::tiny();
    c.separator_is_target = true;
    c.action_local_position = ActionLocalPosition::Shared;
    let seq = SequenceBuilder::new(&c, &spec())
        .unwrap()
        .episode(&[step(0)])
        .unwrap();
    let sep = seq.tokens[10];
    assert!(sep.loss && sep.modality == Modality::Separator);
    assert!(seq.tokens[10..]
        .iter()
        .all(|t| t.local_position == Some(512)));
}

#[test]
fn bad_input_is_an_error_and_leaves_the_sequence_unchanged() {
    let b = SequenceBuilder::new(&GatoConfig::tiny(), &spec()).unwrap();
    let mut seq = b.episode(&[step(0)]).unwrap();
    let before = seq.clone();
    type Mutation = Box<dyn Fn(&mut Timestep)>;
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "missing",
            Box::new(|s| {
                s.observations.remove("camera");
            }),
        ),
        (
            "modality",
            Box::new(|s| {
                s.observations
                    .insert("a_grid".into(), FieldValue::Continuous(vec![0.0; 4]));
            }),
        ),
        (
            "length",
            Box::new(|s| {
                s.observations
                    .insert("a_grid".into(), FieldValue::Discrete(vec![0; 3]));
            }),
        ),
        (
            "range",
            Box::new(|s| {
                s.observations
                    .insert("a_grid".into(), FieldValue::Discrete(vec![0, 0, 0, 11]));
            }),
        ),
        (
            "nan",
            Box::new(|s| {
                s.observations.insert(
                    "z_speed".into(),
                    FieldValue::Continuous(vec![f32::NAN, 0.0]),
                );
            }),
        ),
        (
            "extra",
            Box::new(|s| {
                s.observations
                    .insert("unknown".into(), FieldValue::Text("x".into()));
            }),
        ),
    ];
    for (what, mutate) in cases {
        let mut s = step(1);
        mutate(&mut s);
        let err = b.push_observation(1, &s, &mut seq).unwrap_err().to_string();
        assert!(!err.is_empty(), "{what}");
        assert_eq!(seq, before, "{what}: sequence changed on error: {err}");
    }
    let mut s = step(1);
    s.actions
        .insert("move".into(), FieldValue::Discrete(vec![7]));
    let err = b.push_action(1, &s, &mut seq).unwrap_err().to_string();
    assert!(err.contains("move") && err.contains("[0, 7)"), "{err}");
    assert_eq!(seq, before);
}

#[test]
fn invalid_specs_are_rejected() {
    let c = GatoConfig::tiny();
    let mut s = spec();
    s.actions.push(field(
        "say",
        FieldKind::Text {
            tokenizer: "bytes".into(),
        },
        &[],
    ));
    assert!(SequenceBuilder::new(&c, &s).is_err());
    let mut s = spec();
    s.observations.push(field(
        "mission",
        FieldKind::Discrete { num_values: 2 },
        &[1],
    ));
    assert!(SequenceBuilder::new(&c, &s)
        .unwrap_err()
        .to_string()
        .contains("twice"));
    let mut s = spec();
    s.actions[0] = field("move", FieldKind::Discrete { num_values: 2000 }, &[]);
    assert!(SequenceBuilder::new(&c, &s)
        .unwrap_err()
        .to_string()
        .contains("num_values = 2000"));
    let mut s = spec();
    s.observations[0] = field(
        "t",
        FieldKind::Text {
            tokenizer: "no-such-tokenizer".into(),
        },
        &[],
    );
    let msg = SequenceBuilder::new(&c, &s).unwrap_err().to_string();
    assert!(
        msg.contains("no-such-tokenizer") && msg.contains("bytes"),
        "{msg}"
    );
}

#[test]
fn too_many_observation_tokens_for_local_positions_is_reported() {
    let mut c = GatoConfig::tiny();
    c.local_position_encoding_size = 8;
    let b = SequenceBuilder::new(&c, &spec()).unwrap();
    let err = b.episode(&[step(0)]).unwrap_err().to_string();
    assert!(err.contains("10 tokens") && err.contains("8"), "{err}");
}

fn spec_scalar() -> EnvSpec {
    EnvSpec {
        observations: vec![field(
            "obs",
            FieldKind::Continuous {
                mu_law: true,
                bounds: None,
            },
            &[3],
        )],
        actions: vec![
            field("d", FieldKind::Discrete { num_values: 5 }, &[2]),
            field(
                "c",
                FieldKind::Continuous {
                    mu_law: true,
                    bounds: None,
                },
                &[1],
            ),
        ],
    }
}

proptest! {
    /// Windows hold whole timesteps, cover the sequence in order and never exceed L.
    #[test]
    fn windows_never_split_a_timestep(texts in prop::collection::vec("[a-z]{0,30}", 1..40), l in 1usize..80) {
        let spec = EnvSpec {
            observations: vec![field("t", FieldKind::Text { tokenizer: "bytes".into() }, &[])],
            actions: vec![field("a", FieldKind::Discrete { num_values: 3 }, &[])],
        };
        let b = SequenceBuilder::new(&GatoConfig::tiny(), &spec).unwrap();
        let steps: Vec<Timestep> = texts.iter().map(|s| Timestep {
            observations: [("t".to_string(), FieldValue::Text(s.clone()))].into(),
            actions: [("a".to_string(), FieldValue::Discrete(vec![1]))].into(),
        }).collect();
        let seq = b.episode(&steps).unwrap();
        let longest = (0..steps.len()).map(|i| seq.timestep_range(i).len()).max().unwrap();
        match seq.windows(l) {
            Err(e) => {
                prop_assert!(longest > l);
                let expected = format!("more than {}", l);
                prop_assert!(e.to_string().contains(&expected));
            }
            Ok(ws) => {
                prop_assert!(longest <= l);
                let mut next = 0;
                let mut ts = 0;
                for w in &ws {
                    prop_assert_eq!(w.start, next);
                    prop_assert!(w.end - w.start <= l);
                    prop_assert_eq!(w.first_timestep, ts);
                    prop_assert_eq!(seq.timestep_starts[w.first_timestep], w.start);
                    ts += w.timesteps;
                    next = w.end;
                    let sl = seq.slice(w);
                    prop_assert_eq!(sl.len(), w.end - w.start);
                    prop_assert_eq!(sl.timestep_starts[0], 0);
                }
                prop_assert_eq!(next, seq.len());
                prop_assert_eq!(ts, steps.len());
            }
        }
    }

    /// Actions survive encode → decode: discrete exactly, continuous within the bin.
    #[test]
    fn actions_round_trip(d in prop::collection::vec(0i64..5, 2), c in -200f32..200.0) {
        let b = SequenceBuilder::new(&GatoConfig::tiny(), &spec_scalar()).unwrap();
        let st = Timestep {
            observations: [("obs".to_string(), FieldValue::Continuous(vec![1.0, 2.0, 3.0]))].into(),
            actions: [("d".to_string(), FieldValue::Discrete(d.clone())), ("c".to_string(), FieldValue::Continuous(vec![c]))].into(),
        };
        let seq = b.episode(&[st]).unwrap();
        let action_ids: Vec<u32> = seq.tokens.iter().filter(|t| t.loss).map(|t| t.id).collect();
        prop_assert_eq!(action_ids.len(), b.action_tokens());
        for (i, id) in action_ids.iter().enumerate() {
            prop_assert!(b.legal_action_ids(i).unwrap().contains(id));
        }
        let back = b.decode_action(&action_ids).unwrap();
        prop_assert_eq!(&back["d"], &FieldValue::Discrete(d));
        let FieldValue::Continuous(v) = &back["c"] else { panic!("continuous expected") };
        let t = gato_tokenizers::ContinuousValueTokenizer::new(&GatoConfig::tiny()).unwrap();
        prop_assert_eq!(t.encode_value(v[0], true), t.encode_value(c, true));
    }

    /// Any action tokens decode to values or an error, never a panic.
    #[test]
    fn decode_action_never_panics(tokens in prop::collection::vec(any::<u32>(), 0..6)) {
        let b = SequenceBuilder::new(&GatoConfig::tiny(), &spec_scalar()).unwrap();
        let _ = b.decode_action(&tokens);
    }

    /// Random values of random modalities and lengths are Ok or Err, never a panic.
    #[test]
    fn random_observations_never_panic(kind in 0u8..4, len in 0usize..40, x in any::<f32>(), v in any::<i64>()) {
        let b = SequenceBuilder::new(&GatoConfig::tiny(), &spec()).unwrap();
        let value = match kind {
            0 => FieldValue::Continuous(vec![x; len]),
            1 => FieldValue::Discrete(vec![v; len]),
            2 => FieldValue::Text("é".repeat(len)),
            _ => FieldValue::Image(Image { height: len, width: 16, channels: 3, pixels: gato_tokenizers::ImagePixels::U8(vec![7; len * 48]) }),
        };
        for key in ["mission", "camera", "a_grid", "z_speed"] {
            let mut s = step(0);
            s.observations.insert(key.into(), value.clone());
            let mut seq = TokenSequence::default();
            let _ = b.push_observation(0, &s, &mut seq);
        }
    }
}

#[test]
fn prompts_prefix_whole_timesteps_and_are_never_targets() {
    let b = SequenceBuilder::new(&GatoConfig::tiny(), &spec_scalar()).unwrap();
    let mk = |n: usize, base: f32| -> Vec<Timestep> {
        (0..n)
            .map(|i| Timestep {
                observations: [(
                    "obs".to_string(),
                    FieldValue::Continuous(vec![base + i as f32; 3]),
                )]
                .into(),
                actions: [
                    ("d".to_string(), FieldValue::Discrete(vec![1, 2])),
                    ("c".to_string(), FieldValue::Continuous(vec![0.5])),
                ]
                .into(),
            })
            .collect()
    };
    let episode = b.episode(&mk(3, 0.0)).unwrap(); // 7 tokens per timestep
    let demo = b.episode(&mk(10, 100.0)).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let l = 21 + 14; // room for exactly two prompt timesteps
    let (mut saw_end, mut saw_other) = (false, false);
    for _ in 0..64 {
        let p = b.prompted(&episode, &demo, l, 1.0, &mut rng);
        assert!(p.len() <= l);
        let n_prompt = p.tokens.iter().filter(|t| t.prompt).count();
        assert!(
            n_prompt > 0 && n_prompt % 7 == 0,
            "whole timesteps only: {n_prompt}"
        );
        assert!(p.tokens[..n_prompt].iter().all(|t| t.prompt && !t.loss));
        assert_eq!(&p.tokens[n_prompt..], &episode.tokens[..]);
        assert_eq!(p.timestep_starts.len(), n_prompt / 7 + 3);
        let last_prompt_timestep = p.tokens[n_prompt - 1].timestep;
        if last_prompt_timestep == 9 {
            saw_end = true
        } else {
            saw_other = true
        }
    }
    assert!(saw_end && saw_other, "both prompt modes should occur");
    assert_eq!(b.prompted(&episode, &demo, l, 0.0, &mut rng), episode);
}
