//! `gato train` end to end on the bundled episodes (`tiny`, short windows, a few steps): a run interrupted and
//! resumed equals the straight run tensor for tensor (gradient accumulation on), `kill -9` during checkpoint
//! writes leaves every checkpoint loadable and the run resumable, Ctrl-C stops gracefully with a checkpoint,
//! each bad input stops before the first step with one line, and a diverging run names the step and the last
//! good checkpoint.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{data, gato, no_panic, scratch, text};

/// Arguments of a small `tiny` run writing to `out`.
fn run_args(out: &Path, steps: usize) -> Vec<String> {
    let cartpole = data("data/episodes/cartpole.safetensors");
    let babyai = data("data/episodes/babyai.safetensors");
    [
        "train",
        "--config",
        "tiny",
        "--data",
        &cartpole,
        &babyai,
        "--batch",
        "2",
        "--accumulate",
        "2",
        "--seq",
        "192",
        "--eval-every",
        "5",
        "--checkpoint-every",
        "5",
        "--keep-checkpoints",
        "10",
        "--seed",
        "3",
        // Not the default, so a resume that leaves the flag out must take the run's own fraction.
        "--validation-fraction",
        "0.3",
        // Not the default either: a resume must mix the tasks as the run did for the files to be equal.
        "--task-weights",
        "cartpole=3,babyai=1",
        "--steps",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([steps.to_string(), "--out".into(), out.display().to_string()])
    .collect()
}

fn train(args: &[String]) -> std::process::Output {
    let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    gato(&refs)
}

fn step_dir(out: &Path, step: usize) -> PathBuf {
    out.join("checkpoints").join(format!("step-{step:06}"))
}

const FILES: [&str; 4] = [
    "config.json",
    "model.safetensors",
    "optimizer.safetensors",
    "run.json",
];

#[test]
fn twenty_straight_steps_equal_ten_then_resume_then_ten() {
    let dir = scratch("train-resume");
    let straight = dir.join("straight");
    let o = train(&run_args(&straight, 20));
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    no_panic(&err);
    assert!(out.contains("trained after 20 steps"), "{out}");
    for f in ["metrics.jsonl", "loss.png"] {
        assert!(straight.join(f).is_file(), "{f} missing");
    }
    let metrics = std::fs::read_to_string(straight.join("metrics.jsonl")).unwrap();
    let steps = metrics
        .lines()
        .filter(|l| l.contains("\"event\":\"step\""))
        .count();
    let validations = metrics
        .lines()
        .filter(|l| l.contains("\"event\":\"validation\""))
        .count();
    assert_eq!(steps, 20);
    assert_eq!(
        validations,
        4 * 2,
        "two tasks validated at steps 5, 10, 15, 20"
    );
    assert!(metrics.contains("action_accuracy"));
    // Resume from the step-10 checkpoint into another directory and run to 20.
    let resumed = dir.join("resumed");
    let o = gato(&[
        "train",
        "--resume",
        step_dir(&straight, 10).to_str().unwrap(),
        "--out",
        resumed.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    for f in FILES {
        let a = std::fs::read(step_dir(&straight, 20).join(f)).unwrap();
        let b = std::fs::read(step_dir(&resumed, 20).join(f)).unwrap();
        assert!(
            a == b,
            "{f} differs between the straight and the resumed run"
        );
    }
    // A flag that would change the run is refused on resume.
    let straight_s = straight.to_str().unwrap();
    for (flag, value, want) in [
        (
            "--batch",
            "3",
            "--batch: 3 differs from the resumed run's 2",
        ),
        (
            "--task-weights",
            "uniform",
            "--task-weights: uniform differs from the resumed run's cartpole=3,babyai=1",
        ),
    ] {
        let o = gato(&[
            "train", "--resume", straight_s, "--out", straight_s, flag, value,
        ]);
        let err = text(&o).1;
        assert_eq!(o.status.code(), Some(1));
        assert!(err.contains(want), "{err}");
    }
    // The learning curves redrawn from metrics.jsonl alone.
    let png = dir.join("curves.png");
    let o = gato(&[
        "plot",
        straight.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("20 steps, 4 validations of 2 tasks"), "{out}");
    assert_eq!(image::image_dimensions(&png).unwrap(), (1440, 540));
    // Its newest checkpoint exported as bf16: half the f32 weights' bytes, and it loads and runs.
    let exported = dir.join("bf16");
    let o = gato(&[
        "export",
        "--checkpoint",
        straight.to_str().unwrap(),
        "--out",
        exported.to_str().unwrap(),
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("as bf16"), "{out}");
    let f32_bytes = std::fs::metadata(step_dir(&straight, 20).join("model.safetensors"))
        .unwrap()
        .len();
    let bf16_bytes = std::fs::metadata(exported.join("model.safetensors"))
        .unwrap()
        .len();
    assert!(
        bf16_bytes * 2 < f32_bytes + 64 * 1024 && bf16_bytes * 2 > f32_bytes - 64 * 1024,
        "bf16 {bf16_bytes} vs f32 {f32_bytes}"
    );
    assert!(!exported.join("optimizer.safetensors").exists());
    let cartpole = data("data/episodes/cartpole.safetensors");
    let o = gato(&[
        "forward",
        "--checkpoint",
        exported.to_str().unwrap(),
        "--episode",
        &cartpole,
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let o = gato(&[
        "export",
        "--checkpoint",
        straight.to_str().unwrap(),
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("--force"), "{}", text(&o).1);
    std::fs::remove_dir_all(&dir).ok();
}

/// Every checkpoint directory under `out` holds all its files (none half-written).
fn checkpoints_whole(out: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out.join("checkpoints"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.retain(|p| {
        p.file_name().is_some_and(|n| {
            n.to_string_lossy().starts_with("step-") && !n.to_string_lossy().contains('.')
        })
    });
    for d in &dirs {
        for f in FILES {
            assert!(d.join(f).is_file(), "{} lacks {f}", d.display());
        }
    }
    dirs.sort();
    dirs
}

#[test]
fn kill_9_during_checkpoints_leaves_the_run_resumable() {
    let dir = scratch("train-kill9");
    let out = dir.join("run");
    let mut args = run_args(&out, 10_000);
    // A checkpoint after every step: most of the time is spent writing one.
    for (i, a) in args.clone().iter().enumerate() {
        if a == "--checkpoint-every" || a == "--eval-every" {
            args[i + 1] = if a == "--eval-every" {
                "0".into()
            } else {
                "1".into()
            };
        }
    }
    let mut resumed_once = false;
    for k in 0..4 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gato"))
            .args(if resumed_once {
                vec![
                    "train".to_string(),
                    "--resume".into(),
                    out.display().to_string(),
                    "--out".into(),
                    out.display().to_string(),
                ]
            } else {
                args.clone()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for two more checkpoints, then kill at a moment that varies.
        let before = checkpoints_whole(&out).len();
        let deadline = Instant::now() + Duration::from_secs(120);
        while checkpoints_whole(&out).len() < (before + 2).min(10) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(7 * k + 3));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let whole = checkpoints_whole(&out);
        assert!(!whole.is_empty(), "kill {k}: no checkpoint written");
        resumed_once = true;
    }
    // The newest checkpoint continues: one more step from it succeeds.
    let last = checkpoints_whole(&out).pop().unwrap();
    let taken: usize = last.file_name().unwrap().to_string_lossy()[5..]
        .parse()
        .unwrap();
    let o = gato(&[
        "train",
        "--resume",
        out.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--steps",
        &(taken + 1).to_string(),
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        stdout.contains(&format!("trained after {} steps", taken + 1)),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_after_the_step_with_a_checkpoint() {
    let dir = scratch("train-sigint");
    let out = dir.join("run");
    let mut args = run_args(&out, 10_000);
    for (i, a) in args.clone().iter().enumerate() {
        if a == "--eval-every" || a == "--checkpoint-every" {
            args[i + 1] = "1000".into();
        }
    }
    let child = Command::new(env!("CARGO_BIN_EXE_gato"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until steps are being taken.
    let metrics = out.join("metrics.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&metrics).map_or(0, |m| m.lines().count()) < 2
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let o = child.wait_with_output().unwrap();
    let (stdout, err) = text(&o);
    no_panic(&err);
    assert_eq!(o.status.code(), Some(130), "{stdout}{err}");
    assert!(
        err.contains("interrupted after") && err.contains("--resume"),
        "{err}"
    );
    let whole = checkpoints_whole(&out);
    let last = whole.last().expect("a checkpoint written on interrupt");
    let steps = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"event\":\"step\""))
        .count();
    assert!(
        last.ends_with(format!("step-{steps:06}")),
        "{} vs {steps} steps",
        last.display()
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `gato train` with `extra` arguments fails before the first step with one line containing every `want`.
fn refused(name: &str, extra: &[&str], want: &[&str]) {
    let dir = scratch(name);
    let out = dir.join("run");
    let out_s = out.display().to_string();
    let mut args = vec!["train", "--batch", "2", "--out", &out_s];
    args.extend_from_slice(extra);
    if !extra.contains(&"--resume") {
        args.extend_from_slice(&["--config", "tiny"]);
        if !extra.contains(&"--steps") {
            args.extend_from_slice(&["--steps", "3"]);
        }
    }
    let o = gato(&args);
    let (stdout, err) = text(&o);
    no_panic(&err);
    assert_eq!(o.status.code(), Some(1), "{name}: {stdout}{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    for w in want {
        assert!(line.contains(w), "{name}: `{w}` not in {err}");
    }
    assert!(!out.join("metrics.jsonl").exists(), "{name}: a step ran");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_inputs_stop_before_the_first_step() {
    let dir = scratch("train-bad");
    let cartpole = data("data/episodes/cartpole.safetensors");
    let babyai = data("data/episodes/babyai.safetensors");
    // No episodes found.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    refused(
        "no-episodes",
        &["--data", empty.to_str().unwrap()],
        &["--data", "no episode files", "empty"],
    );
    refused("no-data", &[], &["--data", "no episode files given"]);
    // Unreadable and truncated files.
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not an episode file").unwrap();
    refused(
        "garbage",
        &["--data", garbage.to_str().unwrap()],
        &["garbage.safetensors"],
    );
    let bytes = std::fs::read(&cartpole).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    refused(
        "truncated",
        &["--data", cut.to_str().unwrap()],
        &["cut.safetensors"],
    );
    // Two files of one task whose specs disagree: CartPole's data relabelled as BabyAI.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"]["env_id"] = "BabyAI-GoToLocal-v0".into();
    let h = header.to_string();
    let h = h.clone() + &" ".repeat((8 - h.len() % 8) % 8);
    let mut fake = (h.len() as u64).to_le_bytes().to_vec();
    fake.extend_from_slice(h.as_bytes());
    fake.extend_from_slice(&bytes[8 + n..]);
    let fake_path = dir.join("fake-babyai.safetensors");
    std::fs::write(&fake_path, fake).unwrap();
    refused(
        "disagree",
        &["--data", &babyai, fake_path.to_str().unwrap()],
        &["fake-babyai", "other fields or actions"],
    );
    // A sequence length beyond the model's context; zero steps, batch or accumulation.
    refused(
        "seq",
        &["--data", &cartpole, "--seq", "5000"],
        &["--seq", "5000", "context of 1024"],
    );
    refused(
        "steps0",
        &["--data", &cartpole, "--steps", "0"],
        &["--steps", "0", "at least 1"],
    );
    refused(
        "accumulate0",
        &["--data", &cartpole, "--accumulate", "0"],
        &["--accumulate", "0"],
    );
    // Task weights that cannot be applied: a name of no task, a task left without a weight, a negative weight.
    refused(
        "weights-unknown",
        &["--data", &cartpole, "--task-weights", "pong=1"],
        &["--task-weights", "`pong` names no task", "CartPole-v1"],
    );
    refused(
        "weights-missing",
        &["--data", &cartpole, &babyai, "--task-weights", "cartpole=1"],
        &["--task-weights", "BabyAI-GoToLocal-v0", "has no weight"],
    );
    refused(
        "weights-negative",
        &["--data", &cartpole, "--task-weights", "cartpole=-2"],
        &["--task-weights", "-2 is out of range"],
    );
    refused(
        "precision-unknown",
        &["--data", &cartpole, "--precision", "fp8"],
        &["--precision", "fp8", "f32 or bf16"],
    );
    // Data parallel needs a backend with collectives (NCCL); rank 0 says so before writing the rendezvous file.
    let rdv = dir.join("group.id");
    let rdv_s = rdv.to_str().unwrap().to_string();
    refused(
        "world-size-cpu",
        &[
            "--data",
            &cartpole,
            "--world-size",
            "2",
            "--rendezvous",
            &rdv_s,
        ],
        &["--world-size", "NCCL", "--backend cuda"],
    );
    assert!(!rdv.exists(), "rank 0 wrote a group id it could not make");
    refused(
        "rank-out-of-range",
        &[
            "--data",
            &cartpole,
            "--world-size",
            "2",
            "--rank",
            "2",
            "--rendezvous",
            &rdv_s,
        ],
        &["--rank", "2 is out of range", "0..2"],
    );
    refused(
        "resume-nothing",
        &["--resume", empty.to_str().unwrap()],
        &["--resume", "no training checkpoint"],
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bf16_asked_on_the_cpu_trains_in_f32_and_says_so() {
    let dir = scratch("train-bf16");
    let out = dir.join("run");
    let mut args = run_args(&out, 1);
    args.extend(["--precision".into(), "bf16".into()]);
    let o = train(&args);
    let (stdout, err) = text(&o);
    no_panic(&err);
    assert!(o.status.success(), "{stdout}{err}");
    assert!(
        err.contains("products f32 (bf16 asked; the cpu backend has no fast bf16 products)"),
        "{err}"
    );
    let run = std::fs::read_to_string(step_dir(&out, 1).join("run.json")).unwrap();
    assert!(
        run.contains("\"precision\": \"bf16\""),
        "the run keeps what was asked: {run}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_diverging_run_names_the_step_and_keeps_the_last_good_checkpoint() {
    let dir = scratch("train-diverge");
    // A learning rate no model survives.
    let cfg = dir.join("config.json");
    let o = gato(&["config", "--config", "tiny", "--out", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o).1);
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    c["training"]["learning_rate"] = 1e30.into();
    c["training"]["initial_learning_rate"] = 1e30.into();
    c["training"]["warmup_steps"] = 0.into();
    c["training"]["gradient_clip_norm"] = 0.0.into();
    std::fs::write(&cfg, c.to_string()).unwrap();
    let out = dir.join("run");
    let o = gato(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        &data("data/episodes/cartpole.safetensors"),
        "--steps",
        "50",
        "--batch",
        "2",
        "--seq",
        "128",
        "--checkpoint-every",
        "1",
        "--eval-every",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let (stdout, err) = text(&o);
    no_panic(&err);
    assert_eq!(o.status.code(), Some(1), "{stdout}{err}");
    assert!(
        err.contains("training stopped at step") && err.contains("non-finite"),
        "{err}"
    );
    let whole = checkpoints_whole(&out);
    let last = whole
        .last()
        .expect("the steps before divergence were checkpointed");
    assert!(
        err.contains(&last.display().to_string()),
        "{err} should name {}",
        last.display()
    );
    // The last good checkpoint loads and its weights are finite.
    let o = gato(&[
        "forward",
        "--checkpoint",
        last.to_str().unwrap(),
        "--episode",
        &data("data/episodes/cartpole.safetensors"),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    std::fs::remove_dir_all(&dir).ok();
}
