//! `kill -9` at any moment of `gato init --out X --force` over an existing checkpoint leaves either the old or the
//! new checkpoint at X — whole, and loadable — and no temporary file.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{data, gato, scratch, temporaries, text};

fn read(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    (
        std::fs::read(dir.join("config.json")).unwrap(),
        std::fs::read(dir.join("model.safetensors")).unwrap(),
    )
}

fn init(config: &str, seed: &str, out: &Path, force: bool) {
    let mut args = vec![
        "init",
        "--config",
        config,
        "--seed",
        seed,
        "--out",
        out.to_str().unwrap(),
    ];
    if force {
        args.push("--force");
    }
    let o = gato(&args);
    assert!(o.status.success(), "{}", text(&o).1);
}

/// `gato init --config small --seed 2 --force --out ck`, started in the background.
fn overwrite_with_small(ck: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_gato"))
        .args([
            "init", "--config", "small", "--seed", "2", "--force", "--out",
        ])
        .arg(ck)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill_9_during_init_force_leaves_old_or_new_and_no_temporary() {
    let dir = scratch("kill9");
    let ck = dir.join("ckpt");
    // The old checkpoint (tiny) and, written cleanly elsewhere, what the new one (small) must be byte for byte.
    init("tiny", "1", &ck, false);
    let old = read(&ck);
    let reference = dir.join("reference");
    let start = Instant::now();
    init("small", "2", &reference, false);
    let full = start.elapsed();
    let new = read(&reference);
    std::fs::remove_dir_all(&reference).unwrap();

    let kills = 8;
    let (mut saw_old, mut saw_new, mut cleaned) = (0, 0, 0);
    for k in 0..kills {
        // Kill moments spread over the whole run — building the model, writing, swapping — and past its end.
        let delay = full.mul_f64(2.0 * (k as f64 + 0.5) / kills as f64);
        let mut child = overwrite_with_small(&ck);
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let now = read(&ck);
        if now == old {
            saw_old += 1;
        } else if now == new {
            saw_new += 1;
        } else {
            panic!("after a kill at {delay:?} the checkpoint is neither the old nor the new one");
        }
        // The writer's watchdog removes its temporary once the writer is gone.
        if !temporaries(&dir).is_empty() {
            cleaned += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !temporaries(&dir).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            temporaries(&dir).is_empty(),
            "left behind: {:?}",
            temporaries(&dir)
        );
        if now == new {
            init("tiny", "1", &ck, true);
        }
    }
    println!(
        "{kills} kills over 2 × {full:?}: the old checkpoint {saw_old} times, the new one {saw_new} times; \
         {cleaned} temporaries removed by the watchdog"
    );
    // Whatever is there loads and runs.
    let o = gato(&[
        "forward",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--episode",
        &data("data/episodes/babyai.safetensors"),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    std::fs::remove_dir_all(&dir).ok();
}

/// SIGTERM (and SIGINT) while a checkpoint is written: the handler removes the temporary directory and the
/// process exits with status 130; the old checkpoint stays.
#[cfg(unix)]
#[test]
fn sigterm_during_init_removes_the_temporary() {
    let dir = scratch("sigterm");
    let ck = dir.join("ckpt");
    init("tiny", "1", &ck, false);
    let old = read(&ck);
    let mut child = overwrite_with_small(&ck);
    // Wait until the temporary directory exists: the write is under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    while temporaries(&dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!temporaries(&dir).is_empty(), "the write never started");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = child.wait().unwrap().code();
    let now = read(&ck);
    // Either the handler ran (130, old checkpoint) or the write had just finished (0, new checkpoint).
    match code {
        Some(130) => assert!(now == old, "interrupted, but the checkpoint changed"),
        Some(0) => assert!(now != old),
        other => panic!("exit status {other:?}"),
    }
    assert!(
        temporaries(&dir).is_empty(),
        "left behind: {:?}",
        temporaries(&dir)
    );
    std::fs::remove_dir_all(&dir).ok();
}
