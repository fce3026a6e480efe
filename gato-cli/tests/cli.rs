//! The `gato` binary as a user runs it: exit codes, messages, JSON.

use std::process::{Command, Output};

fn gato(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gato"))
        .args(args)
        .output()
        .expect("run gato")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "panic output: {stderr}"
    );
}

#[test]
fn backends_lists_cpu_and_cuda() {
    let o = gato(&["backends", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let list = v.as_array().unwrap();
    let cpu = list
        .iter()
        .find(|b| b["name"] == "cpu")
        .expect("cpu listed");
    assert_eq!(cpu["available"], true);
    let cuda = list
        .iter()
        .find(|b| b["name"] == "cuda")
        .expect("cuda listed (inventory linking)");
    if cuda["available"] == false {
        assert!(!cuda["reason"].as_str().unwrap().is_empty());
    }
    let (out, _) = text(&gato(&["backends"]));
    assert!(
        out.lines()
            .any(|l| l.starts_with("cpu") && l.contains("available")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("cuda")), "{out}");
}

#[test]
fn cuda_without_gpu_is_a_clean_error() {
    let probe = gato_cuda::probe();
    let o = gato(&["--backend", "cuda", "check", "--size", "64"]);
    let (_, err) = text(&o);
    no_panic(&err);
    if let Err(reason) = probe {
        assert!(!o.status.success());
        assert!(err.contains("CUDA backend unavailable: "), "{err}");
        assert!(err.contains(&reason), "{err}");
    }
}

#[test]
fn unknown_backend_is_rejected_for_every_subcommand() {
    for args in [&["info"][..], &["backends"], &["check"], &["config"]] {
        let mut a = vec!["--backend", "tpu"];
        a.extend_from_slice(args);
        let o = gato(&a);
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{args:?} accepted an unknown backend");
        assert!(
            err.contains("unknown backend `tpu`") && err.contains("cpu, cuda"),
            "{err}"
        );
        no_panic(&err);
    }
}

#[test]
fn info_small_prints_components_and_paper_figure() {
    let o = gato(&["info", "--config", "small"]);
    assert!(o.status.success());
    let (out, _) = text(&o);
    for needle in [
        "shared token embedding",
        "patch embedding",
        "transformer blocks",
        "total",
        "79M",
        "33025",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let o = gato(&["info", "--config", "baseline", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let expect = gato_core::count_parameters(&gato_core::GatoConfig::baseline())
        .unwrap()
        .total;
    assert_eq!(v["parameters"]["total"].as_u64().unwrap(), expect);
    assert_eq!(v["paper_parameters"].as_u64().unwrap(), 364_000_000);
}

#[test]
fn invalid_config_file_names_the_field() {
    let dir = std::env::temp_dir().join(format!("gato-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    let o = gato(&[
        "config",
        "--config",
        "tiny",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["num_group_norm_groups"] = 3.into(); // 16 channels are not divisible by 3
    std::fs::write(&path, v.to_string()).unwrap();
    let o = gato(&["info", "--config", path.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("num_group_norm_groups") && err.contains("= 3") && err.contains("divide"),
        "{err}"
    );

    std::fs::write(&path, "{ \"layer_width\": ").unwrap();
    let o = gato(&["info", "--config", path.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("config.json") && err.contains("line"), "{err}");
    no_panic(&err);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_passes_on_cpu() {
    let o = gato(&["--threads", "1", "check", "--size", "128", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["passed"], true);
    assert!(v["gemm"]["gflops"].as_f64().unwrap() > 0.0);
    assert!(v["checks"].as_array().unwrap().len() >= 6);
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    for args in [
        &["check", "--size", "0"][..],
        &["--threads", "0", "check"],
        &["info", "--config", "medium"],
    ] {
        let o = gato(args);
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        no_panic(&err);
    }
    let o = gato(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}
