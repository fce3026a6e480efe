//! `gato export`: a checkpoint's weights, alone, in another dtype (the shipped `weights/gato-nano` is a training
//! run exported as bf16; loading converts back to f32 for compute, design.md §6).

use std::path::Path;
use std::sync::Arc;

use gato_core::Backend;
use gato_train::run::latest_checkpoint;
use gato_transformer::checkpoint;

use super::init::{overwrite, parse_dtype};
use super::Result;
use crate::output;

pub fn run(be: &Arc<dyn Backend>, from: &Path, out: &Path, dtype: &str, force: bool) -> Result<()> {
    let dtype = parse_dtype(dtype)?;
    let overwrite = overwrite(out, force)?;
    let dir = latest_checkpoint(from).unwrap_or_else(|| from.to_path_buf());
    let model = checkpoint::load(&dir, be.as_ref())?;
    checkpoint::save(&model, be.as_ref(), out, dtype, overwrite)?;
    let bytes = std::fs::metadata(out.join(checkpoint::WEIGHTS_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    output::print(&format!(
        "exported {} as {dtype} to {} ({:.1} MB of weights)\n",
        dir.display(),
        out.display(),
        bytes as f64 / 1e6
    ));
    Ok(())
}
