//! `gato episodes`: what an episode file holds.

use std::path::PathBuf;

use gato_data::{EpisodeFile, Summary};
use serde_json::json;

use super::Result;
use crate::error::CliError;
use crate::output;

/// Summarise every readable file (a bad file does not hide the good ones), then fail with one line naming each
/// file that could not be read.
pub fn run(files: &[PathBuf], as_json: bool) -> Result<()> {
    let mut summaries = Vec::new();
    let mut errors = Vec::new();
    for p in files {
        match EpisodeFile::open(p) {
            Ok(f) => {
                let m = f.summary();
                if !as_json {
                    output::print(&describe(&m));
                }
                summaries.push(m);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if as_json {
        output::json(&json!(summaries));
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(CliError::Files {
        failed: errors.len(),
        total: files.len(),
        detail: errors.join("; "),
    })
}

/// The text form of one file's summary.
fn describe(m: &Summary) -> String {
    let mut s = String::new();
    s += &format!(
        "{}\n  env         {}\n  episodes    {}\n  steps       {}\n",
        m.file, m.env_id, m.episodes, m.steps
    );
    let (lo, hi) = m
        .returns
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &r| {
            (a.min(r), b.max(r))
        });
    s += &format!(
        "  returns     mean {:.2}, min {lo:.2}, max {hi:.2}\n  fields\n",
        m.mean_return
    );
    for f in &m.fields {
        let extra = match (f.num_values, f.mu_law, f.bounds) {
            (Some(n), _, _) => format!("{n} values"),
            (_, Some(mu), b) => {
                format!(
                    "mu-law {}{}",
                    if mu { "on" } else { "off" },
                    b.map_or(String::new(), |(l, h)| format!(", bounds [{l}, {h}]"))
                )
            }
            _ => String::new(),
        };
        s += &format!(
            "    {:<24} {:<11} {:<10} {:<14} {extra}\n",
            f.name,
            format!("{:?}", f.role).to_lowercase(),
            format!("{:?}", f.modality).to_lowercase(),
            format!("{:?}", f.shape)
        );
    }
    for (k, v) in &m.extras {
        s += &format!("  {k:<11} {v}\n");
    }
    s
}
