//! `gato init`: a fresh model from a seed, written as a checkpoint.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use gato_core::{Backend, DType, GatoConfig};
use gato_transformer::atomic_dir::Overwrite;
use gato_transformer::count_parameters;
use gato_transformer::{checkpoint, GatoTransformer};

use super::Result;
use crate::error::CliError;
use crate::output::{self, human};

/// Parse `f32|bf16|f16`.
pub fn parse_dtype(s: &str) -> Result<DType> {
    parse_dtype_flag("dtype", s)
}

/// A float dtype named on the command line (`--dtype`, `--weights`).
pub fn parse_dtype_flag(flag: &'static str, s: &str) -> Result<DType> {
    match s {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        other => Err(CliError::Argument {
            flag,
            detail: format!("`{other}`; choose f32, bf16 or f16"),
        }),
    }
}

/// How a command that writes a checkpoint to `out` treats one already there: refused (an error naming --force)
/// unless `force`, then replaced atomically. Called before any work, so a refusal costs nothing.
pub fn overwrite(out: &Path, force: bool) -> Result<Overwrite> {
    if out.exists() && !force {
        return Err(CliError::Argument {
            flag: "out",
            detail: format!(
                "{} already exists; pass --force to overwrite it",
                out.display()
            ),
        });
    }
    Ok(if force {
        Overwrite::Replace
    } else {
        Overwrite::Refuse
    })
}

pub fn run(
    be: &Arc<dyn Backend>,
    config: &str,
    seed: u64,
    out: &Path,
    dtype: &str,
    force: bool,
) -> Result<()> {
    let dtype = parse_dtype(dtype)?;
    let config = GatoConfig::from_name_or_path(config)?;
    // Refused before the model is built, not after.
    let overwrite = overwrite(out, force)?;
    let t = Instant::now();
    let model = GatoTransformer::init(be.as_ref(), &config, seed)?;
    let init_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    checkpoint::save(&model, be.as_ref(), out, dtype, overwrite)?;
    let n = count_parameters(&config)?.total;
    output::print(&format!(
        "initialised {} parameters ({}) with seed {seed} in {:.2} s; wrote {} ({dtype}) in {:.2} s\n",
        n,
        human(n),
        init_s,
        out.display(),
        t.elapsed().as_secs_f64()
    ));
    Ok(())
}
