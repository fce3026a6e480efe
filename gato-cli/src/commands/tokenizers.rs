//! `gato tokenizers`: the registered text tokenizers.

use serde_json::json;

use crate::output;

pub fn run(as_json: bool) -> gato_core::Result<()> {
    let all = gato_core::tokenizers();
    if as_json {
        let v: Vec<_> = all
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description}))
            .collect();
        output::json(&json!(v));
    } else {
        let s: String = all
            .iter()
            .map(|t| format!("{:<16} {}\n", t.name, t.description))
            .collect();
        output::print(&s);
    }
    Ok(())
}
