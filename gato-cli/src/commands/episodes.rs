//! `gato episodes`: what an episode file holds.

use std::path::PathBuf;

use gato_data::EpisodeFile;
use serde_json::json;

use super::Result;
use crate::output;

pub fn run(files: &[PathBuf], as_json: bool) -> Result<()> {
    let summaries = files
        .iter()
        .map(|p| Ok(EpisodeFile::open(p)?.summary()))
        .collect::<Result<Vec<_>>>()?;
    if as_json {
        output::json(&json!(summaries));
        return Ok(());
    }
    let mut s = String::new();
    for m in &summaries {
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
    }
    output::print(&s);
    Ok(())
}
