//! Bad input at the command line, one case per defect found by trying gato as a new user would: each exits with
//! status 1 and one line that names the key fact (the flag or field, the value, the allowed range or the real
//! cause), prints no panic, and leaves no file behind.

mod common;

use std::path::Path;
use std::process::Output;

use common::{data, gato, no_panic, scratch, temporaries, text, tiny_checkpoint};

/// Exit status 1, no panic, exactly one line on stderr, containing every one of `facts`.
fn fails_with(o: &Output, facts: &[&str]) -> String {
    let (_, err) = text(o);
    assert_eq!(o.status.code(), Some(1), "status {:?}: {err}", o.status);
    no_panic(&err);
    assert_eq!(err.trim().lines().count(), 1, "one line expected:\n{err}");
    for f in facts {
        assert!(err.contains(f), "`{f}` missing from: {err}");
    }
    err
}

/// The tiny preset as JSON with `field` set to `value` (a JSON literal), written to `dir/name`.
fn config_with(dir: &Path, name: &str, field: &str, value: &str) -> String {
    let o = gato(&["config", "--config", "tiny"]);
    assert!(o.status.success());
    let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[field] = serde_json::from_str(value).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, v.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn unbounded_config_sizes_are_refused_naming_the_field_and_range() {
    let dir = scratch("bounds");
    for (field, value, facts) in [
        (
            "separator_token",
            "1000000000",
            vec!["separator_token", "1000000000", "4194304"],
        ),
        (
            "layer_width",
            "1099511627776",
            vec!["layer_width", "1099511627776", "[1, 65536]"],
        ),
        (
            "num_transformer_blocks",
            "1000000000000",
            vec!["num_transformer_blocks", "[1, 1024]"],
        ),
        (
            "layer_width",
            "18446744073709551615",
            vec!["layer_width", "18446744073709551615"],
        ),
    ] {
        let cfg = config_with(&dir, "c.json", field, value);
        fails_with(&gato(&["info", "--config", &cfg]), &facts);
        let out = dir.join("ckpt");
        fails_with(
            &gato(&["init", "--config", &cfg, "--out", out.to_str().unwrap()]),
            &facts,
        );
        assert!(!out.exists() && temporaries(&dir).is_empty());
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_model_larger_than_memory_is_refused_with_both_figures() {
    let dir = scratch("memory");
    // Within every bound, but ~17 TB of parameters.
    let o = gato(&["config", "--config", "tiny"]);
    let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["num_transformer_blocks"] = 1024.into();
    v["layer_width"] = 65536.into();
    v["feedforward_hidden_size"] = 262144.into();
    let cfg = dir.join("huge.json");
    std::fs::write(&cfg, v.to_string()).unwrap();
    let out = dir.join("ckpt");
    let err = fails_with(
        &gato(&[
            "init",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]),
        &["not enough memory", "f32 parameters", "TiB", "is available"],
    );
    assert!(err.contains("needs"), "{err}");
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn init_refuses_to_overwrite_without_force_and_is_reproducible() {
    let (dir, ck) = tiny_checkpoint("reproducible", 5);
    let before = std::fs::read(ck.join("model.safetensors")).unwrap();
    fails_with(
        &gato(&[
            "init",
            "--config",
            "tiny",
            "--seed",
            "6",
            "--out",
            ck.to_str().unwrap(),
        ]),
        &["already exists", "--force"],
    );
    assert_eq!(std::fs::read(ck.join("model.safetensors")).unwrap(), before);
    // The same seed gives the same bytes; --force replaces.
    let again = dir.join("again");
    let o = gato(&[
        "init",
        "--config",
        "tiny",
        "--seed",
        "5",
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    for f in ["model.safetensors", "config.json"] {
        assert_eq!(
            std::fs::read(ck.join(f)).unwrap(),
            std::fs::read(again.join(f)).unwrap(),
            "{f} differs between two inits with seed 5"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(again.join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o644, "{f}");
        }
    }
    let o = gato(&[
        "init",
        "--config",
        "tiny",
        "--seed",
        "6",
        "--out",
        ck.to_str().unwrap(),
        "--force",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert_ne!(std::fs::read(ck.join("model.safetensors")).unwrap(), before);
    assert!(temporaries(&dir).is_empty(), "{:?}", temporaries(&dir));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_panicking_tokenizer_library_gives_one_line() {
    let dir = scratch("panic");
    let empty = dir.join("empty.model");
    std::fs::write(&empty, b"").unwrap();
    let err = fails_with(
        &gato(&[
            "tokenize",
            "--text",
            "hi",
            "--text-tokenizer",
            empty.to_str().unwrap(),
        ]),
        &["empty.model"],
    );
    assert!(!err.contains("backtrace"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn numeric_arguments_are_validated_never_clamped() {
    let ep = data("data/episodes/metaworld.safetensors");
    let bench = |extra: &[&str]| {
        let mut a = vec!["bench", "--config", "tiny", "--episode", &ep];
        a.extend_from_slice(extra);
        gato(&a)
    };
    fails_with(&bench(&["--reps", "0"]), &["--reps", "0", "at least 1"]);
    fails_with(
        &bench(&["--act-steps", "0"]),
        &["--act-steps", "0", "at least 1"],
    );
    fails_with(
        &bench(&["--act-steps", "101"]),
        &["--act-steps", "101", "1 to 100"],
    );
    fails_with(&bench(&["--tokens", "0"]), &["--tokens", "0", "44 to 1024"]);
    fails_with(
        &bench(&["--tokens", "5000"]),
        &["--tokens", "5000", "44 to 1024"],
    );
    let (dir, ck) = tiny_checkpoint("numeric", 1);
    let ck = ck.to_str().unwrap();
    fails_with(
        &gato(&[
            "act",
            "--checkpoint",
            ck,
            "--episode",
            &ep,
            "--max-steps",
            "0",
        ]),
        &["--max-steps", "0", "at least 1"],
    );
    fails_with(
        &gato(&[
            "forward",
            "--checkpoint",
            ck,
            "--episode",
            &ep,
            "--reps",
            "0",
        ]),
        &["--reps", "0", "at least 1"],
    );
    fails_with(
        &gato(&["demo", "--config", "tiny", "--steps", "0"]),
        &["--steps", "0", "at least 1"],
    );
    fails_with(
        &gato(&["tokenize", "--continuous", "1,1e308"]),
        &["--continuous", "1e308", "index 1", "f32 range"],
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn messages_name_the_users_path_and_the_real_cause() {
    let dir = scratch("paths");
    let d = dir.to_str().unwrap();
    // A directory given as an episode file.
    fails_with(&gato(&["episodes", d]), &[d, "is a directory"]);
    // A tokenizer model file that does not exist.
    fails_with(
        &gato(&[
            "tokenize",
            "--text",
            "hi",
            "--text-tokenizer",
            "/nonexistent.model",
        ]),
        &["/nonexistent.model", "file not found"],
    );
    // Output files in a directory that does not exist.
    let out = dir.join("nodir/c.json");
    fails_with(
        &gato(&["config", "--config", "tiny", "--out", out.to_str().unwrap()]),
        &["nodir/c.json", "does not exist"],
    );
    let (ckdir, ck) = tiny_checkpoint("paths-ck", 2);
    let dump = dir.join("nodir/x");
    let ep = data("data/episodes/cartpole.safetensors");
    let err = fails_with(
        &gato(&[
            "forward",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--episode",
            &ep,
            "--dump-logits",
            dump.to_str().unwrap(),
        ]),
        &["--dump-logits", "nodir/x", "does not exist"],
    );
    assert!(
        !err.contains("/.tmp"),
        "an internal temporary file is named: {err}"
    );
    // A missing text file.
    fails_with(
        &gato(&["tokenize", "--text-file", "/nonexistent.txt"]),
        &["--text-file", "/nonexistent.txt"],
    );
    assert!(temporaries(&dir).is_empty() && !dir.join("nodir").exists());
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&ckdir).ok();
}

#[test]
fn a_checkpoint_whose_images_have_other_channels_is_refused_by_name() {
    let dir = scratch("channels");
    let cfg = config_with(&dir, "gray.json", "image_channels", "1");
    let ck = dir.join("ckpt");
    let o = gato(&["init", "--config", &cfg, "--out", ck.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o).1);
    fails_with(
        &gato(&[
            "forward",
            "--checkpoint",
            ck.to_str().unwrap(),
            "--episode",
            &data("data/episodes/breakout.safetensors"),
        ]),
        &[
            "image_observations",
            "3-channel",
            "expects 1",
            "image_channels",
        ],
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// An episode file whose metadata lists no episode (everything else valid).
fn write_zero_episode_file(path: &Path) {
    let bytes = std::fs::read(data("data/episodes/cartpole.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut meta: std::collections::HashMap<String, String> =
        serde_json::from_value(header["__metadata__"].clone()).unwrap();
    meta.insert("episodes".into(), "[]".into());
    let none: Vec<(String, safetensors::tensor::TensorView<'_>)> = Vec::new();
    safetensors::serialize_to_file(none, Some(meta), path).unwrap();
}

#[test]
fn episode_files_zero_episodes_and_a_mix_of_good_and_bad() {
    let dir = scratch("episodes");
    let empty = dir.join("empty.safetensors");
    write_zero_episode_file(&empty);
    fails_with(
        &gato(&["episodes", empty.to_str().unwrap()]),
        &["empty.safetensors", "no episode"],
    );
    // Good files are summarised even when another fails.
    let (good, good2) = (
        data("data/episodes/cartpole.safetensors"),
        data("data/episodes/pendulum.safetensors"),
    );
    let o = gato(&["episodes", &good, empty.to_str().unwrap(), &good2]);
    let (out, _) = text(&o);
    fails_with(&o, &["1 of 3 files", "empty.safetensors"]);
    assert!(
        out.contains("CartPole-v1") && out.contains("Pendulum-v1"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn text_can_come_from_a_file() {
    let dir = scratch("textfile");
    let f = dir.join("mission.txt");
    // Longer than a comfortable command line, within one observation's 512 local positions.
    let long = "go to the red ball ".repeat(25);
    std::fs::write(&f, &long).unwrap();
    let o = gato(&["tokenize", "--text-file", f.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // `bytes`: one token per byte, then the separator.
    assert_eq!(v["tokens"].as_array().unwrap().len(), long.len() + 1);
    std::fs::remove_dir_all(&dir).ok();
}
