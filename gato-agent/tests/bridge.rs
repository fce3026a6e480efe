//! The Python bridge against real workers: the protocol on the mock task and on CartPole, the same seed giving
//! the same observations as the recorder (CartPole and BabyAI, every field of one episode), and a worker that
//! crashes, hangs or sends a malformed frame. Needs the recorder's Python (`bash tools/record/setup.sh`, which
//! CI runs); without it each test prints why it skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gato_agent::bridge::{default_python, PythonWorker, WorkerOptions};
use gato_agent::{evaluate, Environment, EvalPlan, Policy, Summary};
use gato_data::EpisodeFile;

fn python(test: &str) -> Option<PathBuf> {
    let p = default_python();
    if p.is_none() {
        // Past the test harness's capture, so CI's summary counts it.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: no Python with the simulators ($GATO_PYTHON or .cache/venv-record; run bash tools/record/setup.sh)"
        );
    }
    p
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gato-bridge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_protocol_on_the_mock_task() {
    let Some(py) = python("the_protocol_on_the_mock_task") else {
        return;
    };
    let mut w = PythonWorker::spawn(&WorkerOptions::new(&py, "mock")).unwrap();
    assert_eq!(w.env_id(), "gato-mock-v0");
    assert_eq!(w.fields().len(), 2);
    let o = w.reset(6).unwrap();
    assert_eq!(
        o.fields["discrete_observations"],
        gato_tokenizers::FieldValue::Discrete(vec![2])
    );
    let a = w.expert_action().unwrap().unwrap();
    let o = w.step(&a).unwrap();
    assert_eq!(o.reward, 1.0);
    assert!(!o.done());
    // An action outside the space is refused before it is sent; the worker is still usable.
    let bad = std::collections::BTreeMap::from([(
        "discrete_actions".to_string(),
        gato_tokenizers::FieldValue::Discrete(vec![7]),
    )]);
    let e = w.step(&bad).unwrap_err().to_string();
    assert!(
        e.contains("outside the action space") && e.contains("not sent"),
        "{e}"
    );
    assert!(w.step(&a).is_ok());
}

fn faulty(py: &Path, fault: &str, dir: &Path) -> WorkerOptions {
    WorkerOptions {
        timeout: Duration::from_secs(2),
        vars: vec![
            ("GATO_WORKER_FAULT".into(), fault.into()),
            (
                "GATO_WORKER_FAULT_ONCE".into(),
                dir.join(fault).display().to_string(),
            ),
        ],
        ..WorkerOptions::new(py, "mock")
    }
}

#[test]
fn crash_hang_and_malformed_frame_fail_one_episode_and_the_evaluation_goes_on() {
    let Some(py) = python("crash_hang_and_malformed_frame") else {
        return;
    };
    let dir = scratch("faults");
    for (fault, want) in [
        ("crash@3", "worker exited during step"),
        ("hang@3", "no answer to step within 2.0 s"),
        ("garbage@3", "malformed frame during step"),
    ] {
        let opts = faulty(&py, fault, &dir);
        let new_env = || PythonWorker::spawn(&opts);
        let plan = EvalPlan {
            episodes: 3,
            workers: 1,
            seed: 0,
            max_steps: usize::MAX,
            frames_of_first: false,
        };
        let r = evaluate(&plan, &Policy::Expert, &new_env, &|_| {});
        let s = Summary::of(&r);
        assert_eq!(s.failures.len(), 1, "{fault}: {:?}", s.failures);
        assert!(
            s.failures[0].1.contains(want),
            "{fault}: {}",
            s.failures[0].1
        );
        assert_eq!(
            s.episodes, 2,
            "{fault}: the others are played by a restarted worker"
        );
        assert_eq!(s.mean_return, 10.0);
    }
    if fault_exit_status_named(&py, &dir) {
        println!("crash exit status named in the error");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The crash error carries the worker's exit status.
fn fault_exit_status_named(py: &Path, dir: &Path) -> bool {
    let _ = std::fs::remove_file(dir.join("crash@1"));
    let mut w = PythonWorker::spawn(&faulty(py, "crash@1", dir)).unwrap();
    let a = {
        w.reset(0).unwrap();
        w.expert_action().unwrap().unwrap()
    };
    let e = w.step(&a).unwrap_err().to_string();
    assert!(e.contains("exit status: 3"), "{e}");
    true
}

/// Record one expert episode with the recorder, then play the same seed through the worker with the same
/// expert: every observation field and every action equal, step for step.
fn same_as_recorder(env: &str, extra: &[&str]) {
    let test = format!("same_seed_same_observations_{env}");
    let Some(py) = python(&test) else { return };
    let dir = scratch(env);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let seed = 7u64;
    let out = std::process::Command::new(&py)
        .arg(root.join("tools/record/record.py"))
        .args([
            "--env",
            env,
            "--episodes",
            "1",
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(&dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = EpisodeFile::open(&dir.join(format!("{env}.safetensors"))).unwrap();
    let steps = file.timesteps(0).unwrap();
    let mut w = PythonWorker::spawn(&WorkerOptions::new(&py, env)).unwrap();
    assert_eq!(
        w.fields(),
        file.fields(),
        "the worker describes the fields as the file does"
    );
    let mut obs = w.reset(seed).unwrap();
    for (t, step) in steps.iter().enumerate() {
        assert_eq!(obs.fields, step.observations, "{env}: observation {t}");
        let a = w.expert_action().unwrap().unwrap();
        assert_eq!(a, step.actions, "{env}: action {t}");
        obs = w.step(&a).unwrap();
    }
    println!("{env}: {} timesteps equal", steps.len());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn same_seed_same_observations_cartpole() {
    same_as_recorder("cartpole", &["--max-steps", "200"]);
}

#[test]
fn same_seed_same_observations_babyai() {
    same_as_recorder("babyai", &[]);
}
