//! `gato eval` end to end through the Python bridge: the expert scores 1 and the random policy 0 (± their spread)
//! against data/references.json on CartPole and BabyAI; a model plays; a missing Python or package is one error
//! naming the set-up command; SIGTERM and Ctrl-C leave no orphan worker. Needs the recorder's Python
//! (`bash tools/record/setup.sh`, run by CI); without it each test prints why it skipped.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{gato, no_panic, scratch, text, tiny_checkpoint};
use serde_json::Value;

fn python(test: &str) -> Option<PathBuf> {
    let p = gato_agent::bridge::default_python();
    if p.is_none() {
        // Past the test harness's capture, so CI's summary counts it.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: no Python with the simulators ($GATO_PYTHON or .cache/venv-record; run bash tools/record/setup.sh)"
        );
    }
    p
}

fn eval_json(py: &std::path::Path, args: &[&str]) -> Value {
    let mut all = vec!["eval", "--python", py.to_str().unwrap(), "--json"];
    all.extend_from_slice(args);
    let o = gato(&all);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    no_panic(&err);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn the_expert_scores_one_and_random_scores_zero_through_the_bridge() {
    let Some(py) = python("the_expert_scores_one_and_random_scores_zero_through_the_bridge") else {
        return;
    };
    for (policy, target) in [("expert", 1.0), ("random", 0.0)] {
        let v = eval_json(
            &py,
            &[
                "--policy",
                policy,
                "--env",
                "cartpole,babyai",
                "--episodes",
                "12",
                "--workers",
                "2",
            ],
        );
        assert!(
            v["references"]
                .as_str()
                .unwrap()
                .ends_with("references.json"),
            "{v}"
        );
        for e in v["envs"].as_array().unwrap() {
            let (score, spread) = (
                e["normalised_score"].as_f64().unwrap(),
                e["normalised_std"].as_f64().unwrap(),
            );
            assert_eq!(e["episodes"], 12, "{e}");
            assert!(e["failures"].as_array().unwrap().is_empty(), "{e}");
            // The spread of one episode's normalised return, at least 0.02: a mean of 12 stays well inside it.
            assert!(
                (score - target).abs() <= spread.max(0.02),
                "{policy} on {}: {score} ± {spread}, expected {target}",
                e["env"]
            );
        }
    }
}

#[test]
fn a_model_plays_cartpole_with_an_expert_prompt_and_the_mock_task_without() {
    let Some(py) = python("a_model_plays_cartpole") else {
        return;
    };
    let (dir, ck) = tiny_checkpoint("eval-model", 0);
    let ck = ck.to_str().unwrap();
    let v = eval_json(
        &py,
        &[
            "--checkpoint",
            ck,
            "--env",
            "cartpole",
            "--episodes",
            "2",
            "--max-steps",
            "40",
        ],
    );
    let e = &v["envs"][0];
    assert_eq!(e["episodes"], 2, "{e}");
    assert!(e["steps"].as_u64().unwrap() >= 2);
    assert!(
        e["ms_per_step_before_window_full"].as_f64().unwrap() > 0.0,
        "{e}"
    );
    assert!(e["normalised_score"].is_number(), "{e}");
    let v = eval_json(
        &py,
        &[
            "--checkpoint",
            ck,
            "--env",
            "mock",
            "--episodes",
            "3",
            "--workers",
            "2",
            "--prompt",
            "none",
        ],
    );
    assert_eq!(v["envs"][0]["steps"], 30, "{v}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_missing_python_or_package_is_one_error_naming_the_set_up_command() {
    // The expert on CartPole with `python`: fails with status 1 and no panic; the error text.
    let fails_with = |python: &str| {
        let o = gato(&[
            "eval", "--policy", "expert", "--env", "cartpole", "--python", python,
        ]);
        let err = text(&o).1;
        assert_eq!(o.status.code(), Some(1), "{err}");
        no_panic(&err);
        err
    };
    let err = fails_with("/nonexistent/python3");
    assert!(err.contains("bash tools/record/setup.sh"), "{err}");
    // A Python without the simulator packages (site-packages off).
    let dir = scratch("eval-bare-python");
    let bare = dir.join("python");
    std::fs::write(&bare, "#!/bin/sh\nexec python3 -S -I \"$@\"\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bare, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    if Command::new(&bare)
        .arg("-c")
        .arg("pass")
        .status()
        .is_ok_and(|s| s.success())
    {
        let err = fails_with(bare.to_str().unwrap());
        assert!(
            err.contains("missing package") && err.contains("bash tools/record/setup.sh"),
            "{err}"
        );
    } else {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED the bare-Python case: no python3 on PATH"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Process ids whose command line holds `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                found.push(pid);
            }
        }
    }
    found
}

#[cfg(unix)]
fn interrupt_leaves_no_orphan(signal: libc::c_int, name: &str) {
    let Some(py) = python(name) else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_gato"))
        .args([
            "eval",
            "--policy",
            "expert",
            "--env",
            "mock",
            "--episodes",
            "50",
            "--workers",
            "2",
        ])
        .args(["--step-timeout", "600", "--python", py.to_str().unwrap()])
        .env("GATO_WORKER_FAULT", "hang@2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let needle = format!("gato-envs-{}/", child.id());
    let t = Instant::now();
    while processes_with(&needle).len() < 2 && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let workers = processes_with(&needle);
    assert_eq!(
        workers.len(),
        2,
        "two workers should be running: {workers:?}"
    );
    // SAFETY: kill(2) on the child we spawned and have not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    let t = Instant::now();
    while !processes_with(&needle).is_empty() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        processes_with(&needle).is_empty(),
        "orphan workers: {:?}",
        processes_with(&needle)
    );
    let dir = std::env::temp_dir().join(needle.trim_end_matches('/'));
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[cfg(unix)]
#[test]
fn sigterm_leaves_no_orphan_worker() {
    interrupt_leaves_no_orphan(libc::SIGTERM, "sigterm_leaves_no_orphan_worker");
}

#[cfg(unix)]
#[test]
fn ctrl_c_leaves_no_orphan_worker() {
    interrupt_leaves_no_orphan(libc::SIGINT, "ctrl_c_leaves_no_orphan_worker");
}

#[test]
fn eval_arguments_are_checked() {
    for (args, want) in [
        (vec!["--env", "doom"], "--env: unknown environment `doom`"),
        (vec!["--episodes", "0"], "--episodes: 0 is out of range"),
        (vec!["--workers", "0"], "--workers: 0 is out of range"),
        (vec!["--policy", "oracle"], "--policy: `oracle`"),
        (vec!["--prompt", "sometimes"], "--prompt: `sometimes`"),
        (
            vec!["--step-timeout=-1"],
            "--step-timeout: -1 must be a positive",
        ),
        (
            vec!["--policy", "model"],
            "--checkpoint: required with --policy model",
        ),
    ] {
        let mut all = vec!["eval", "--python", "/nonexistent/python3"];
        all.extend_from_slice(&args);
        let o = gato(&all);
        let err = text(&o).1;
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn the_demo_plays_the_shipped_generalist_in_the_live_simulators() {
    let Some(_py) = python("the_demo_plays_the_shipped_generalist_in_the_live_simulators") else {
        return;
    };
    let o = Command::new(env!("CARGO_BIN_EXE_gato"))
        .args(["demo", "--steps", "2", "--live-episodes", "1"])
        .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    no_panic(&err);
    assert!(out.contains("In the live simulators"), "{out}");
    // One scored row per environment, after the offline table's rows.
    let live = &out[out.find("In the live simulators").unwrap()..];
    for env in ["cartpole", "pendulum", "babyai", "breakout", "metaworld"] {
        assert!(
            live.lines()
                .any(|l| l.starts_with(env) && l.contains(" 1 ")),
            "{env} missing:\n{live}"
        );
    }
}
