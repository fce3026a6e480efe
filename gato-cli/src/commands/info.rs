//! `gato info`: a config, its token layout and its parameter count per component beside the paper's figure.

use gato_core::{GatoConfig, Result};
use gato_transformer::{count_parameters, paper_parameter_count};
use serde_json::json;

use crate::output::{self, human, thousands};

pub fn run(name: &str, as_json: bool) -> Result<()> {
    let config = GatoConfig::from_name_or_path(name)?;
    let layout = config.layout()?;
    let params = count_parameters(&config)?;
    let paper = paper_parameter_count(&config);
    if as_json {
        output::json(&json!({
            "config": config,
            "token_layout": layout,
            "parameters": params,
            "paper_parameters": paper.map(|(_, n)| n),
        }));
        return Ok(());
    }
    let mut s = format!("config `{name}`\n");
    let fields = serde_json::to_value(&config).unwrap_or_default();
    if let Some(obj) = fields.as_object() {
        for (k, v) in obj {
            if k != "training" {
                s += &format!("  {k:<30} {v}\n");
            }
        }
    }
    s += "\ntoken layout (design.md §2)\n";
    for (k, v) in layout.describe() {
        s += &format!("  {k:<12} {v}\n");
    }
    s += &format!(
        "\nparameters\n  {:<30} {:<14} {:>14}\n",
        "component", "paper section", "parameters"
    );
    for c in &params.components {
        s += &format!(
            "  {:<30} {:<14} {:>14}\n",
            c.name,
            c.paper_section,
            thousands(c.params)
        );
    }
    s += &format!(
        "  {:<30} {:<14} {:>14}  ({})\n",
        "total",
        "",
        thousands(params.total),
        human(params.total)
    );
    s += &format!(
        "  {:<30} {:<14} {:>14}  ({})\n",
        "of which transformer blocks",
        "",
        thousands(params.transformer_blocks),
        human(params.transformer_blocks)
    );
    match paper {
        Some((label, n)) => {
            s += &format!(
                "  paper (Table 6): {label}; this count is {:+.1}% ({}) — see docs/usage.md, \"Parameter counts\"\n",
                (params.total as f64 / n as f64 - 1.0) * 100.0,
                human(params.total)
            )
        }
        None => s += "  paper: no figure for this shape\n",
    }
    output::print(&s);
    Ok(())
}
