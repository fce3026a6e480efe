//! Training checkpoints: the model's `config.json` and `model.safetensors` (f32, loadable by every command) plus
//! `optimizer.safetensors` (AdamW's moments per parameter, `m.{name}` and `v.{name}`, and the step counts in one
//! metadata entry), written as one atomic step with the same helper as `gato init`
//! (`gato_transformer::atomic_dir`). Resuming from one continues bit for bit.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use gato_core::{Backend, DType, Error, Result};
use gato_transformer::atomic_dir::{self, Overwrite};
use gato_transformer::checkpoint;
use safetensors::{Dtype, SafeTensors};

use crate::trainer::Trainer;

/// The optimiser state's file inside a training checkpoint.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

fn err(dir: &Path, detail: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: dir.to_path_buf(),
        problems: vec![detail.into()],
    }
}

/// The training run's description inside a checkpoint written by a run (`gato_train::run`): its seed, batch
/// shape and data, so `--resume` continues the same run.
pub const RUN_FILE: &str = "run.json";

/// Write `trainer` to the checkpoint directory `dir` (atomically; an existing one only with
/// [`Overwrite::Replace`]).
pub fn save(trainer: &Trainer, be: &dyn Backend, dir: &Path, overwrite: Overwrite) -> Result<()> {
    save_with_run(trainer, be, dir, overwrite, None)
}

/// [`save`], with the run's description (`run`, JSON) written as [`RUN_FILE`] in the same atomic step.
pub fn save_with_run(
    trainer: &Trainer,
    be: &dyn Backend,
    dir: &Path,
    overwrite: Overwrite,
    run: Option<&str>,
) -> Result<()> {
    let model = trainer.model()?;
    let (moments, state) = trainer.optimizer_state(be)?;
    // One metadata entry (a JSON object with sorted keys), so the bytes are reproducible.
    let meta: HashMap<String, String> = [("state".to_string(), state)].into();
    atomic_dir::write_dir(dir, overwrite, |tmp| {
        checkpoint::write_files(&model, be, tmp, DType::F32)?;
        write_f32_tensors(&tmp.join(OPTIMIZER_FILE), &moments, Some(meta))?;
        if let Some(run) = run {
            std::fs::write(tmp.join(RUN_FILE), run)
                .map_err(|e| err(dir, format!("cannot write {RUN_FILE}: {e}")))?;
        }
        Ok(())
    })
}

/// Write f32 tensors `(name, values, dims)` to the safetensors file `path`, with optional metadata; an error names
/// the file and the tensor.
pub fn write_f32_tensors(
    path: &Path,
    tensors: &[(String, Vec<f32>, Vec<usize>)],
    meta: Option<HashMap<String, String>>,
) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, values, _)| values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, _, d), b)| {
            safetensors::tensor::TensorView::new(Dtype::F32, d.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| err(path, format!("{n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, meta, path)
        .map_err(|e| err(path, format!("cannot write: {e}")))
}

/// Load a training checkpoint written by [`save`] onto `be`, to continue a run of `total_steps`.
pub fn load(dir: &Path, be: &dyn Backend, total_steps: usize) -> Result<Trainer> {
    let model = checkpoint::load(dir, be)?;
    let path = dir.join(OPTIMIZER_FILE);
    let bytes = std::fs::read(&path).map_err(|e| err(&path, e.to_string()))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| err(&path, format!("not a valid safetensors file: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| err(&path, format!("not a valid safetensors file: {e}")))?;
    let state = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("state"))
        .ok_or_else(|| err(&path, "no `state` metadata (not a gato-rs optimiser file)"))?
        .clone();
    let mut moments = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(err(
                &path,
                format!("`{name}` is {:?}, expected F32", view.dtype()),
            ));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        moments.insert(name, values);
    }
    Trainer::resume(be, &model, total_steps, moments, &state).map_err(|e| match e {
        Error::InvalidArgument { detail, .. } => err(&path, detail),
        other => other,
    })
}
