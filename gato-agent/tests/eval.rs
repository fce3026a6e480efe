//! The evaluation loop without Python: the pure-Rust mock task played by its expert, a random policy and a
//! (randomly initialised) model through the same `Agent`; parallel workers; failures reported and restarted; an
//! action outside the action space never sent.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use gato_agent::bridge::check_action;
use gato_agent::{
    evaluate, play_episode, Environment, EvalPlan, ExpertPlayer, MockEnv, Observation, Policy,
    RandomPlayer, Summary,
};
use gato_core::{create_backend, Backend, BackendOptions, GatoConfig};
use gato_cpu as _;
use gato_data::{FieldMeta, FieldModality, Role};
use gato_tokenizers::{FieldKind, FieldValue, SequenceBuilder};
use gato_transformer::{GatoTransformer, Sampling, WindowPolicy};

fn plan(episodes: usize, workers: usize) -> EvalPlan {
    EvalPlan {
        episodes,
        workers,
        seed: 100,
        max_steps: usize::MAX,
        frames_of_first: false,
    }
}

#[test]
fn the_expert_plays_the_mock_task_perfectly_and_random_plays_at_chance() {
    let mut env = MockEnv::new();
    let o = play_episode(&mut ExpertPlayer, &mut env, 3, usize::MAX, false).unwrap();
    assert_eq!(o.report.episode_return, MockEnv::LENGTH as f64);
    assert_eq!(o.report.steps, MockEnv::LENGTH);
    assert_eq!(o.report.success, Some(true));
    assert!(o.report.done);

    let new_env = || Ok(MockEnv::new());
    let random = Policy::Random(MockEnv::spec().actions);
    let r = evaluate(&plan(400, 3), &random, &new_env, &|_| {});
    let s = Summary::of(&r);
    assert_eq!(s.episodes, 400);
    // Expected return 10 · 1/4 = 2.5, std of the mean sqrt(10 · 3/16 / 400) ≈ 0.07.
    assert!((s.mean_return - 2.5).abs() < 0.35, "{}", s.mean_return);
    assert_eq!(
        r.iter().map(|x| x.index).collect::<Vec<_>>(),
        (0..400).collect::<Vec<_>>()
    );
    // An episode's actions depend on its seed, not on the worker that played it.
    let one = evaluate(&plan(400, 1), &random, &new_env, &|_| {});
    let returns = |r: &[gato_agent::EpisodeResult]| -> Vec<f64> {
        r.iter()
            .map(|x| x.outcome.as_ref().unwrap().report.episode_return)
            .collect()
    };
    assert_eq!(returns(&r), returns(&one));
    // max_steps cuts an episode short.
    let o = play_episode(
        &mut RandomPlayer::new(MockEnv::spec().actions),
        &mut env,
        0,
        4,
        false,
    )
    .unwrap();
    assert_eq!(o.report.steps, 4);
    assert!(!o.report.done);
}

fn tiny_model(be: &dyn Backend) -> (GatoTransformer, SequenceBuilder) {
    let config = GatoConfig::from_name_or_path("tiny").unwrap();
    let model = GatoTransformer::init(be, &config, 0).unwrap();
    let builder = SequenceBuilder::new(&config, &MockEnv::spec()).unwrap();
    (model, builder)
}

#[test]
fn a_model_plays_the_mock_task_through_the_agent_on_parallel_workers() {
    let be: Arc<dyn Backend> = create_backend("cpu", &BackendOptions::default()).unwrap();
    let (model, builder) = tiny_model(be.as_ref());
    let policy = Policy::Model {
        model: &model,
        builder: &builder,
        be: be.as_ref(),
        sampling: Sampling::Temperature(1.0),
        window: WindowPolicy::Slide,
        prompt: None,
    };
    let new_env = || Ok(MockEnv::new());
    let r = evaluate(&plan(6, 2), &policy, &new_env, &|_| {});
    let s = Summary::of(&r);
    assert!(s.failures.is_empty(), "{:?}", s.failures);
    assert_eq!(s.episodes, 6);
    assert_eq!(s.steps, 6 * MockEnv::LENGTH);
    assert!((0.0..=MockEnv::LENGTH as f64).contains(&s.mean_return));
    assert!(s.player_seconds > 0.0 && s.before_full.steps == s.steps);
    // Reproducible: the same seeds give the same returns with another worker count.
    let again = evaluate(&plan(6, 3), &policy, &new_env, &|_| {});
    let ret = |r: &[gato_agent::EpisodeResult]| -> Vec<f64> {
        r.iter()
            .map(|x| x.outcome.as_ref().unwrap().report.episode_return)
            .collect()
    };
    assert_eq!(ret(&r), ret(&again));
}

/// The mock task, failing once at a chosen step of a chosen episode (shared counter across workers).
struct Flaky {
    inner: MockEnv,
    seed: u64,
    steps: usize,
    fail_seed: u64,
}

impl Environment for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn reset(&mut self, seed: u64) -> gato_agent::Result<Observation> {
        self.seed = seed;
        self.steps = 0;
        self.inner.reset(seed)
    }
    fn step(&mut self, a: &BTreeMap<String, FieldValue>) -> gato_agent::Result<Observation> {
        self.steps += 1;
        if self.seed == self.fail_seed && self.steps == 3 {
            return Err(gato_agent::Error::Environment {
                env: "flaky".into(),
                detail: "simulated crash".into(),
            });
        }
        self.inner.step(a)
    }
    fn expert_action(&mut self) -> gato_agent::Result<Option<BTreeMap<String, FieldValue>>> {
        self.inner.expert_action()
    }
}

#[test]
fn a_failed_episode_is_reported_and_its_environment_restarted() {
    let made = AtomicUsize::new(0);
    let new_env = || {
        made.fetch_add(1, Ordering::SeqCst);
        Ok(Flaky {
            inner: MockEnv::new(),
            seed: 0,
            steps: 0,
            fail_seed: 102,
        })
    };
    let r = evaluate(&plan(5, 1), &Policy::Expert, &new_env, &|_| {});
    let s = Summary::of(&r);
    assert_eq!(s.episodes, 4);
    assert_eq!(s.failures.len(), 1);
    assert_eq!(s.failures[0].0, 2);
    assert!(
        s.failures[0].1.contains("simulated crash"),
        "{}",
        s.failures[0].1
    );
    assert_eq!(s.mean_return, MockEnv::LENGTH as f64);
    assert_eq!(
        made.load(Ordering::SeqCst),
        2,
        "one environment, then one restart after the failure"
    );
}

fn meta(name: &str, modality: FieldModality, shape: Vec<usize>) -> FieldMeta {
    FieldMeta {
        name: name.into(),
        role: Role::Action,
        modality,
        shape,
        dtype: match modality {
            FieldModality::Discrete => "int64",
            _ => "float32",
        }
        .into(),
        num_values: (modality == FieldModality::Discrete).then_some(3),
        mu_law: (modality == FieldModality::Continuous).then_some(false),
        bounds: (modality == FieldModality::Continuous).then_some((-0.5, 0.5)),
    }
}

#[test]
fn an_action_outside_the_space_is_never_sent_and_decoding_clamps_to_it() {
    let fields = vec![
        meta("d", FieldModality::Discrete, vec![]),
        meta("c", FieldModality::Continuous, vec![2]),
    ];
    let act = |d: i64, c: [f32; 2]| {
        BTreeMap::from([
            ("d".to_string(), FieldValue::Discrete(vec![d])),
            ("c".to_string(), FieldValue::Continuous(c.to_vec())),
        ])
    };
    assert!(check_action(&fields, &act(2, [-0.5, 0.5])).is_ok());
    for (bad, want) in [
        (
            act(3, [0.0, 0.0]),
            "`d` = 3 is outside the action space [0, 3)",
        ),
        (act(-1, [0.0, 0.0]), "`d` = -1"),
        (
            act(0, [0.6, 0.0]),
            "`c` = 0.6 is outside the action space [-0.5, 0.5]",
        ),
        (act(0, [0.0, f32::NAN]), "`c` = NaN"),
    ] {
        let e = check_action(&fields, &bad).unwrap_err();
        assert!(e.contains(want) && e.contains("not sent"), "{e}");
    }
    assert!(check_action(&fields, &BTreeMap::new())
        .unwrap_err()
        .contains("missing"));
    // Decoding: every legal token of a bounded continuous field decodes inside the bounds.
    let config = GatoConfig::from_name_or_path("tiny").unwrap();
    let spec = gato_data::env_spec(&fields, "bytes");
    let builder = SequenceBuilder::new(&config, &spec).unwrap();
    for j in 0..builder.action_tokens() {
        let legal = builder.legal_action_ids(j).unwrap();
        for edge in [legal.start, legal.end - 1] {
            let mut tokens: Vec<u32> = (0..builder.action_tokens())
                .map(|k| builder.legal_action_ids(k).unwrap().start)
                .collect();
            tokens[j] = edge;
            let decoded = builder.decode_action(&tokens).unwrap();
            assert!(check_action(&fields, &decoded).is_ok(), "{decoded:?}");
        }
    }
    assert!(matches!(
        spec.actions[1].kind,
        FieldKind::Continuous {
            bounds: Some(_),
            ..
        }
    ));
}
