//! Running the `gato` binary from the integration tests, and paths of the bundled data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run `gato` with `args` from the test's working directory.
pub fn gato(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gato"))
        .args(args)
        .output()
        .expect("run gato")
}

/// stdout and stderr as text.
pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Fail when stderr shows a panic or a backtrace.
pub fn no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked at") && !stderr.contains("RUST_BACKTRACE"),
        "panic output: {stderr}"
    );
}

/// A path in the repository (tests run in the crate's directory).
pub fn data(path: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
        .to_string_lossy()
        .into_owned()
}

/// `gato init --config tiny --seed SEED` into a fresh temporary directory: (the directory, the checkpoint in it).
pub fn tiny_checkpoint(name: &str, seed: u64) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("gato-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ck = dir.join("ckpt");
    let seed = seed.to_string();
    let o = gato(&[
        "init",
        "--config",
        "tiny",
        "--seed",
        &seed,
        "--out",
        ck.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    (dir, ck)
}

/// A fresh, empty temporary directory named for the test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gato-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Names in `dir` that look like temporaries (`*.gato-tmp-*`, `*.tmp*`).
pub fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("gato-tmp") || n.contains(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}
