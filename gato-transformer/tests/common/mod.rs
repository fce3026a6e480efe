//! Shared test fixtures: a tiny model and real token batches with every modality.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use gato_core::{Backend, GatoConfig, TokenBatch};
use gato_cpu::CpuBackend;
use gato_tokenizers::{
    to_batch, EnvSpec, FieldKind, FieldSpec, FieldValue, Image, ImagePixels, SequenceBuilder,
    Timestep, TokenSequence,
};

pub fn backend(threads: usize) -> Arc<dyn Backend> {
    Arc::new(CpuBackend::new(Some(threads)).unwrap())
}

pub fn config() -> GatoConfig {
    GatoConfig::tiny()
}

fn field(key: &str, kind: FieldKind, shape: &[usize]) -> FieldSpec {
    FieldSpec {
        key: key.into(),
        kind,
        shape: shape.to_vec(),
    }
}

pub fn spec() -> EnvSpec {
    EnvSpec {
        observations: vec![
            field(
                "mission",
                FieldKind::Text {
                    tokenizer: "bytes".into(),
                },
                &[],
            ),
            field("camera", FieldKind::Image { channels: 3 }, &[32, 16, 3]),
            field("grid", FieldKind::Discrete { num_values: 11 }, &[4]),
            field(
                "speed",
                FieldKind::Continuous {
                    mu_law: true,
                    bounds: None,
                },
                &[2],
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

pub fn builder(c: &GatoConfig) -> SequenceBuilder {
    SequenceBuilder::new(c, &spec()).unwrap()
}

/// Timestep `t` of episode `seed`, deterministic.
pub fn step(seed: u64, t: usize) -> Timestep {
    let k = (seed as usize).wrapping_mul(31).wrapping_add(t * 7);
    let mut o = BTreeMap::new();
    o.insert(
        "mission".into(),
        FieldValue::Text(["go", "up", "red"][k % 3].into()),
    );
    o.insert(
        "camera".into(),
        FieldValue::Image(Image {
            height: 32,
            width: 16,
            channels: 3,
            pixels: ImagePixels::U8(
                (0..32 * 16 * 3)
                    .map(|i| ((i * 13 + k * 29) % 256) as u8)
                    .collect(),
            ),
        }),
    );
    o.insert(
        "grid".into(),
        FieldValue::Discrete((0..4).map(|i| ((k + i) % 11) as i64).collect()),
    );
    o.insert(
        "speed".into(),
        FieldValue::Continuous(vec![(k as f32 * 0.37).sin() * 5.0, -0.5]),
    );
    let mut a = BTreeMap::new();
    a.insert("move".into(), FieldValue::Discrete(vec![(k % 7) as i64]));
    a.insert(
        "arm".into(),
        FieldValue::Continuous(vec![0.25, -((k % 5) as f32) / 5.0]),
    );
    Timestep {
        observations: o,
        actions: a,
    }
}

pub fn episode(c: &GatoConfig, seed: u64, steps: usize) -> TokenSequence {
    let steps: Vec<Timestep> = (0..steps).map(|t| step(seed, t)).collect();
    builder(c).episode(&steps).unwrap()
}

pub fn batch_of(seqs: &[&TokenSequence]) -> TokenBatch {
    to_batch(seqs)
}
