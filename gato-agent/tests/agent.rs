//! The acting loop on the bundled real episodes with a `tiny` model: the context it builds, teacher forcing,
//! determinism, and an episode played through the `Environment` trait.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use gato_agent::{evaluate_offline, prompt_from, run_episode, Agent, Environment, EpisodeReplay};
use gato_core::{Backend, GatoConfig};
use gato_data::EpisodeFile;
use gato_tokenizers::FieldValue;
use gato_transformer::{ActionSampler, GatoTransformer, Sampling, WindowPolicy};

fn backend() -> Arc<dyn Backend> {
    Arc::new(gato_cpu::CpuBackend::new(Some(2)).unwrap())
}

fn episode(name: &str) -> EpisodeFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data/episodes")
        .join(name);
    EpisodeFile::open(&path).unwrap()
}

/// After teacher-forced steps, the agent's window holds exactly the recorded episode's tokens — observation,
/// separator and the recorded action of every step — except the last step's action, which waits to enter the
/// cache with the next observation.
#[test]
fn teacher_forced_context_is_the_recorded_episode() {
    let be = backend();
    let c = GatoConfig::tiny();
    let model = GatoTransformer::init(be.as_ref(), &c, 1).unwrap();
    for name in [
        "cartpole.safetensors",
        "babyai.safetensors",
        "metaworld.safetensors",
    ] {
        let file = episode(name);
        let builder = file.builder(&c, "bytes").unwrap();
        let steps = file.timesteps(0).unwrap();
        let steps = &steps[..steps.len().min(4)];
        let sampler = ActionSampler::new(Sampling::Temperature(1.0), 3).unwrap();
        let mut agent = Agent::new(&model, &builder, sampler, WindowPolicy::Rebuild);
        agent.reset(be.as_ref(), None).unwrap();
        let results = evaluate_offline(&mut agent, be.as_ref(), steps, &mut ()).unwrap();
        assert_eq!(results.len(), steps.len());
        let recorded = builder.episode(steps).unwrap();
        let n_actions = builder.action_tokens();
        let want: Vec<u32> = recorded.tokens[..recorded.len() - n_actions]
            .iter()
            .map(|t| t.id)
            .collect();
        let got = &agent.state().history().ids;
        assert_eq!(got, &want, "{name}: the window is not the recorded episode");
        for (r, step) in results.iter().zip(steps) {
            assert_eq!(r.tokens.len(), n_actions);
            assert_eq!(r.expert, step.actions);
            for (j, &id) in r.tokens.iter().enumerate() {
                assert!(
                    builder.legal_action_ids(j).unwrap().contains(&id),
                    "{name}: {id}"
                );
            }
        }
    }
}

/// The same seed gives the same actions; `reset` forgets the episode (the window holds only the prompt).
#[test]
fn acting_is_deterministic_and_reset_forgets() {
    let be = backend();
    let c = GatoConfig::tiny();
    let model = GatoTransformer::init(be.as_ref(), &c, 2).unwrap();
    let file = episode("metaworld.safetensors");
    let builder = file.builder(&c, "bytes").unwrap();
    let steps = file.timesteps(0).unwrap();
    let prompt = prompt_from(&file.tokenize(0, &builder).unwrap(), 200);
    assert!(!prompt.is_empty() && prompt.len() <= 200);
    assert!(prompt.tokens.iter().all(|t| t.prompt && !t.loss));
    let run = || {
        let sampler = ActionSampler::new(Sampling::Temperature(1.0), 9).unwrap();
        let mut agent = Agent::new(&model, &builder, sampler, WindowPolicy::Rebuild);
        agent.reset(be.as_ref(), Some(&prompt)).unwrap();
        let first = evaluate_offline(&mut agent, be.as_ref(), &steps[..3], &mut ()).unwrap();
        agent.reset(be.as_ref(), Some(&prompt)).unwrap();
        assert_eq!(agent.state().len(), prompt.len());
        assert_eq!(agent.timestep(), 0);
        first.into_iter().map(|r| r.tokens).collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

/// One episode through the `Environment` trait: the agent acts until the replayed episode ends, the return is
/// the sum of the recorded rewards, and every action names the spec's fields with legal values.
#[test]
fn run_episode_plays_a_replayed_episode() {
    let be = backend();
    let c = GatoConfig::tiny();
    let model = GatoTransformer::init(be.as_ref(), &c, 4).unwrap();
    let file = episode("babyai.safetensors");
    let builder = file.builder(&c, "bytes").unwrap();
    let steps = file.timesteps(2).unwrap();
    let rewards: Vec<f64> = file.rewards(2).unwrap().iter().map(|&r| r as f64).collect();
    let mut env = EpisodeReplay::new(file.env_id(), steps.clone(), rewards.clone()).unwrap();
    let sampler = ActionSampler::new(Sampling::Argmax, 0).unwrap();
    let mut agent = Agent::new(&model, &builder, sampler, WindowPolicy::Rebuild);
    let report = run_episode(&mut agent, be.as_ref(), &mut env, 0, None, 100).unwrap();
    assert_eq!(report.steps, steps.len() - 1);
    assert!(report.done);
    let want: f64 = rewards[..steps.len() - 1].iter().sum();
    assert!((report.episode_return - want).abs() < 1e-9, "{report:?}");
    // A step limit ends the episode early.
    let report = run_episode(&mut agent, be.as_ref(), &mut env, 0, None, 2).unwrap();
    assert_eq!((report.steps, report.done), (2, false));
    // Every action the agent took decodes to the spec's fields.
    let obs = env.reset(0).unwrap();
    agent.reset(be.as_ref(), None).unwrap();
    let step = gato_tokenizers::Timestep {
        observations: obs.fields,
        actions: BTreeMap::new(),
    };
    let action = agent.act(be.as_ref(), &step).unwrap();
    let keys: Vec<&String> = action.values.keys().collect();
    let want: Vec<&String> = steps[0].actions.keys().collect();
    assert_eq!(keys, want);
    match action.values.values().next().unwrap() {
        FieldValue::Discrete(v) => assert!(v.iter().all(|&x| (0..7).contains(&x)), "{v:?}"),
        other => panic!("BabyAI's action is discrete, got {other:?}"),
    }
}

/// A replayed episode refuses misuse with errors that say what happened.
#[test]
fn episode_replay_errors() {
    let file = episode("cartpole.safetensors");
    let steps = file.timesteps(0).unwrap();
    assert!(EpisodeReplay::new("empty", Vec::new(), Vec::new()).is_err());
    let mut env = EpisodeReplay::new(file.env_id(), steps[..2].to_vec(), vec![1.0, 1.0]).unwrap();
    let action = steps[0].actions.clone();
    let e = env.step(&action).unwrap_err().to_string();
    assert!(e.contains("before reset"), "{e}");
    env.reset(0).unwrap();
    let e = env.step(&BTreeMap::new()).unwrap_err().to_string();
    assert!(e.contains("action fields"), "{e}");
    let last = env.step(&action).unwrap();
    assert!(last.done() && last.reward == 1.0);
    let e = env.step(&action).unwrap_err().to_string();
    assert!(e.contains("after the episode ended"), "{e}");
}
