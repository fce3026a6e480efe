//! A binary that links the plugin can select its tokenizer by name; the stock `gato` binary cannot.

use std::process::Command;

fn run(bin: &str, args: &[&str]) -> std::process::Output {
    Command::new(bin).args(args).output().expect("run binary")
}

#[test]
fn linked_binary_lists_and_uses_the_plugin() {
    let bin = env!("CARGO_BIN_EXE_gato-with-plugin");
    let o = run(bin, &["tokenizers"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("codepoints") && out.contains("bytes"),
        "{out}"
    );

    let o = run(
        bin,
        &[
            "tokenize",
            "--text",
            "hé",
            "--text-tokenizer",
            "codepoints",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<u64> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![104, 233, 33024], "h, é, separator");

    let o = run(
        bin,
        &["tokenize", "--text", "🤖", "--text-tokenizer", "codepoints"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("U+1F916"), "{err}");
}

#[test]
fn plugin_is_in_this_test_binary_registry() {
    use gato_plugin_example as _;
    assert!(gato_core::tokenizers()
        .iter()
        .any(|t| t.name == "codepoints"));
}
