//! `gato backends`: every registered backend, available or not and why.

use gato_core::Result;
use serde_json::json;

use crate::output;

pub fn run(as_json: bool) -> Result<()> {
    let rows: Vec<_> = gato_core::backends()
        .into_iter()
        .map(|e| (e.name, e.description, (e.probe)()))
        .collect();
    if as_json {
        let v: Vec<_> = rows
            .iter()
            .map(|(name, desc, probe)| match probe {
                Ok(device) => {
                    json!({"name": name, "description": desc, "available": true, "device": device})
                }
                Err(reason) => {
                    json!({"name": name, "description": desc, "available": false, "reason": reason})
                }
            })
            .collect();
        output::json(&json!(v));
        return Ok(());
    }
    let mut s = String::new();
    for (name, desc, probe) in rows {
        match probe {
            Ok(device) => s += &format!("{name:<6} available    {device}\n"),
            Err(reason) => s += &format!("{name:<6} unavailable  {reason}\n"),
        }
        s += &format!("{:<6} {desc}\n", "");
    }
    output::print(&s);
    Ok(())
}
