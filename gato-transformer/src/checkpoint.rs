//! Checkpoints: a directory with `config.json` (the full `GatoConfig`) and `model.safetensors` (one tensor per
//! parameter). Loading verifies every name, shape and dtype against the config and reports **all** mismatches at
//! once; f32, f16 and bf16 weights load (converted to f32 for compute).
//!
//! Parameter names (W width, V vocabulary, H·K attention width, F feed-forward size, Cp patch channels, C image
//! channels, P patch size, R = 512 local rows, B = 128 buckets):
//!
//! | name | shape |
//! |---|---|
//! | `embed.tokens` | `[V, W]` (also the output head when tied) |
//! | `embed.patch.stem.weight` / `.bias` | `[Cp, C, 1, 1]` / `[Cp]` |
//! | `embed.patch.blocks.{i}.norm1.weight` / `.bias`, `norm2.*` | `[Cp]` |
//! | `embed.patch.blocks.{i}.conv1.weight` / `.bias`, `conv2.*` | `[Cp, Cp, 3, 3]` / `[Cp]` |
//! | `embed.patch.proj.weight` / `.bias` | `[Cp·P·P, W]` / `[W]` |
//! | `embed.patch_position.rows`, `embed.patch_position.cols` | `[B, W]` |
//! | `embed.local_position` | `[R (+1 if actions share a row), W]` |
//! | `blocks.{i}.ln1.weight` / `.bias`, `ln2.*` | `[W]` |
//! | `blocks.{i}.attn.q.weight` / `.bias` (and `k`, `v`) | `[W, H·K]` / `[H·K]` |
//! | `blocks.{i}.attn.o.weight` / `.bias` | `[H·K, W]` / `[W]` |
//! | `blocks.{i}.ff.in.weight` / `.bias` | `[W, F]` (GEGLU: `[W, 2F]`) / `[F]` (`[2F]`) |
//! | `blocks.{i}.ff.out.weight` / `.bias` | `[F, W]` / `[W]` |
//! | `final_ln.weight` / `.bias` | `[W]` |
//! | `head.weight` (untied only) | `[V, W]` |
//!
//! Linear weights are stored `[in, out]` (`y = x·W + b`); a PyTorch `nn.Linear` holds the transpose.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use gato_core::{
    Backend, DType, Error, GatoConfig, HostSlice, Init, ParamSource, Result, Shape, Tensor,
};
use half::{bf16, f16};
use safetensors::{Dtype, SafeTensors};

use crate::atomic_dir::{self, Overwrite};
use crate::model::GatoTransformer;

/// File names inside a checkpoint directory.
pub const CONFIG_FILE: &str = "config.json";
/// See [`CONFIG_FILE`].
pub const WEIGHTS_FILE: &str = "model.safetensors";

fn ckpt_err(path: &Path, problems: Vec<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        problems,
    }
}

/// Write `model` to the checkpoint directory `dir` with weights stored as `dtype` (f32, f16 or bf16), as one atomic
/// step ([`crate::atomic_dir::write_dir`]): at every instant `dir` holds the whole old checkpoint or the whole new
/// one. An existing `dir` is replaced only with [`Overwrite::Replace`]. The bytes depend only on the model and
/// `dtype`: the same seed gives the same files.
pub fn save(
    model: &GatoTransformer,
    be: &dyn Backend,
    dir: &Path,
    dtype: DType,
    overwrite: Overwrite,
) -> Result<()> {
    atomic_dir::write_dir(dir, overwrite, |tmp| write_files(model, be, tmp, dtype))
}

/// Write `config.json` and `model.safetensors` into the existing directory `dir`, not atomically: for a caller
/// that writes more files into the same atomic step (training's checkpoints add the optimiser state).
pub fn write_files(
    model: &GatoTransformer,
    be: &dyn Backend,
    dir: &Path,
    dtype: DType,
) -> Result<()> {
    let st_dtype = match dtype {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::U32 => {
            return Err(Error::invalid(
                "checkpoint::save",
                "weights are stored as f32, f16 or bf16",
            ))
        }
    };
    // Everything is read from the backend before the disk is touched.
    let mut blobs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in model.parameters() {
        let values = be
            .download(&be.cast(&t, DType::F32)?)?
            .into_f32()
            .unwrap_or_default();
        let bytes: Vec<u8> = match dtype {
            DType::F16 => values
                .iter()
                .flat_map(|v| f16::from_f32(*v).to_le_bytes())
                .collect(),
            DType::BF16 => values
                .iter()
                .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
                .collect(),
            _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        };
        blobs.push((name, t.dims().to_vec(), bytes));
    }
    let views = blobs
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(st_dtype, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| ckpt_err(dir, vec![format!("{n}: {e}")]))
        })
        .collect::<Result<Vec<_>>>()?;
    // One metadata entry: safetensors writes its metadata map in hash order, which made two saves of one model
    // differ byte for byte.
    let meta: HashMap<String, String> =
        [("format".to_string(), "gato-rs checkpoint v1".to_string())].into();
    model.config().save(&dir.join(CONFIG_FILE))?;
    safetensors::serialize_to_file(views, Some(meta), &dir.join(WEIGHTS_FILE))
        .map_err(|e| ckpt_err(dir, vec![format!("cannot write {WEIGHTS_FILE}: {e}")]))
}

/// Looks parameters up in a safetensors file, recording every problem.
struct CheckpointSource<'a> {
    st: SafeTensors<'a>,
    be: &'a dyn Backend,
    problems: Vec<String>,
    used: HashSet<String>,
}

impl ParamSource for CheckpointSource<'_> {
    fn param(&mut self, name: &str, shape: &Shape, _init: Init) -> Result<Tensor> {
        self.used.insert(name.to_string());
        let zeros = |be: &dyn Backend| be.zeros(shape, DType::F32);
        let view = match self.st.tensor(name) {
            Ok(v) => v,
            Err(_) => {
                self.problems
                    .push(format!("missing tensor `{name}` (expected {shape})"));
                return zeros(self.be);
            }
        };
        if view.shape() != shape.dims() {
            self.problems.push(format!(
                "tensor `{name}` has shape {:?}, the config needs {shape}",
                view.shape()
            ));
            return zeros(self.be);
        }
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                self.problems.push(format!(
                    "tensor `{name}` has dtype {other:?}; weights must be F32, F16 or BF16"
                ));
                return zeros(self.be);
            }
        };
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            self.problems.push(format!(
                "tensor `{name}` holds a non-finite value at index {i}"
            ));
            return zeros(self.be);
        }
        self.be.upload(HostSlice::F32(&values), shape)
    }
}

/// Load a checkpoint directory onto `be`. A missing or corrupt file, or any tensor that does not match the config,
/// is an error that lists every problem.
pub fn load(dir: &Path, be: &dyn Backend) -> Result<GatoTransformer> {
    if !dir.is_dir() {
        let why = if dir.exists() {
            "is not a directory (a checkpoint is a directory holding config.json and model.safetensors)"
        } else {
            "does not exist"
        };
        return Err(ckpt_err(dir, vec![why.to_string()]));
    }
    // Temporaries left by a writer that was killed outright.
    atomic_dir::sweep_stale(dir);
    let config = GatoConfig::load(&dir.join(CONFIG_FILE))?;
    let path = dir.join(WEIGHTS_FILE);
    let file = std::fs::File::open(&path).map_err(|e| ckpt_err(&path, vec![e.to_string()]))?;
    // SAFETY: read-only map; the file must not be truncated while loading.
    let map =
        unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ckpt_err(&path, vec![e.to_string()]))?;
    let st = SafeTensors::deserialize(&map)
        .map_err(|e| ckpt_err(&path, vec![format!("not a valid safetensors file: {e}")]))?;
    let mut src = CheckpointSource {
        st,
        be,
        problems: Vec::new(),
        used: HashSet::new(),
    };
    let model = GatoTransformer::new(&mut src, &config)?;
    let mut extra: Vec<String> = src
        .st
        .names()
        .into_iter()
        .filter(|n| !src.used.contains(*n))
        .map(str::to_string)
        .collect();
    extra.sort();
    src.problems.extend(
        extra
            .into_iter()
            .map(|n| format!("unexpected tensor `{n}` (not in this config)")),
    );
    if !src.problems.is_empty() {
        return Err(ckpt_err(&path, src.problems));
    }
    Ok(model)
}

/// Parameter names and shapes a config implies, in construction order (for docs and tools).
pub fn parameter_shapes(model: &GatoTransformer) -> BTreeMap<String, Vec<usize>> {
    model
        .parameters()
        .into_iter()
        .map(|(n, t)| (n, t.dims().to_vec()))
        .collect()
}
