//! `gato config`: write a preset as JSON to start a custom config from.

use std::path::Path;

use gato_core::GatoConfig;

use super::Result;
use crate::output;

pub fn run(name: &str, out: Option<&Path>) -> Result<()> {
    let config = GatoConfig::from_name_or_path(name)?;
    match out {
        Some(path) => {
            output::writable_file("out", path)?;
            Ok(config.save(path)?)
        }
        None => {
            output::print(&(config.to_json() + "\n"));
            Ok(())
        }
    }
}
