//! Reading episode files: memory-map, validate everything up front, then hand out timesteps.
//!
//! [`EpisodeFile::open`] checks the whole file before returning: the safetensors structure, the metadata version,
//! every field description, every tensor's presence, dtype and shape, consistent lengths across fields, text
//! offsets and UTF-8, finite continuous values and rewards, discrete values in range, and that no tensor is left
//! unexplained. A truncated or corrupt file is an error naming the file (and the episode and field) — never a
//! panic and never a partial read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::{Deref, Range};
use std::path::Path;

use gato_core::GatoConfig;
use gato_tokenizers::{
    EnvSpec, FieldKind, FieldSpec, FieldValue, Image, ImagePixels, SequenceBuilder, Timestep,
    TokenSequence,
};
use safetensors::{Dtype, SafeTensors};
use serde::Serialize;

use crate::error::{DataError, Result};
use crate::format::{EpisodeMeta, FieldMeta, FieldModality, Role, FORMAT_NAME, FORMAT_VERSION};

/// The bytes of a file: memory-mapped, or owned (tests, in-memory data).
enum Buffer {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Buffer::Mapped(m) => m,
            Buffer::Owned(v) => v,
        }
    }
}

/// Where a tensor's bytes are.
#[derive(Debug, Clone)]
struct TensorLoc {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Range<usize>,
}

/// A validated episode file.
pub struct EpisodeFile {
    name: String,
    buf: Buffer,
    env_id: String,
    fields: Vec<FieldMeta>,
    episodes: Vec<EpisodeMeta>,
    extras: BTreeMap<String, String>,
    tensors: HashMap<String, TensorLoc>,
}

impl std::fmt::Debug for EpisodeFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EpisodeFile({}, {}, {} episodes)",
            self.name,
            self.env_id,
            self.episodes.len()
        )
    }
}

/// Per-file figures for `gato episodes`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// File name.
    pub file: String,
    /// Environment id.
    pub env_id: String,
    /// Episodes.
    pub episodes: usize,
    /// Timesteps over all episodes.
    pub steps: usize,
    /// Field descriptions.
    pub fields: Vec<FieldMeta>,
    /// Per-episode returns.
    pub returns: Vec<f64>,
    /// Mean return.
    pub mean_return: f64,
    /// Free-form metadata (policy, expert return, ...).
    pub extras: BTreeMap<String, String>,
}

fn read_le<const N: usize, T>(bytes: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| f(c.try_into().unwrap_or([0; N])))
        .collect()
}

impl EpisodeFile {
    /// Memory-map and validate a file.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| DataError::Io {
            path: path.to_path_buf(),
            source,
        };
        if path.is_dir() {
            return Err(io(std::io::Error::other(
                "is a directory; expected an episode file (.safetensors, docs/episode-format.md)",
            )));
        }
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; like every mmap reader we assume the file is not truncated underneath us
        // while it is open (documented in docs/episode-format.md).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::from_buffer(Buffer::Mapped(map), path.display().to_string())
    }

    /// Validate an in-memory file; `name` is used in errors.
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<Self> {
        Self::from_buffer(Buffer::Owned(bytes), name.to_string())
    }

    fn from_buffer(buf: Buffer, name: String) -> Result<Self> {
        let format = |detail: String| DataError::Format {
            file: name.clone(),
            detail,
        };
        let st = SafeTensors::deserialize(&buf)
            .map_err(|e| format(format!("not a valid safetensors file: {e}")))?;
        let (_, header) =
            SafeTensors::read_metadata(&buf).map_err(|e| format(format!("bad header: {e}")))?;
        let meta = header
            .metadata()
            .clone()
            .ok_or_else(|| format("no __metadata__: not a gato episode file".into()))?;
        let get = |k: &str| {
            meta.get(k)
                .ok_or_else(|| format(format!("metadata key `{k}` is missing")))
        };
        if get("format")? != FORMAT_NAME {
            return Err(format(format!(
                "metadata format is {:?}, expected {FORMAT_NAME:?}",
                get("format")?
            )));
        }
        let version = get("version")?;
        if version.parse::<u32>().ok() != Some(FORMAT_VERSION) {
            return Err(format(format!(
                "format version {version:?} is not supported (this reader reads {FORMAT_VERSION})"
            )));
        }
        let env_id = get("env_id")?.clone();
        let fields: Vec<FieldMeta> = serde_json::from_str(get("fields")?)
            .map_err(|e| format(format!("metadata `fields`: {e}")))?;
        let episodes: Vec<EpisodeMeta> = serde_json::from_str(get("episodes")?)
            .map_err(|e| format(format!("metadata `episodes`: {e}")))?;
        if episodes.is_empty() {
            return Err(format(
                "metadata `episodes` lists no episode; a file holds one or more".to_string(),
            ));
        }
        let mut names = HashSet::new();
        for f in &fields {
            f.validate()
                .map_err(|d| format(format!("field `{}`: {d}", f.name)))?;
            if !names.insert(f.name.as_str()) {
                return Err(format(format!("field `{}` is declared twice", f.name)));
            }
        }
        if !fields.iter().any(|f| f.role == Role::Action) {
            return Err(format("no action field".into()));
        }
        let base = buf.as_ptr() as usize;
        let tensors: HashMap<String, TensorLoc> = st
            .tensors()
            .into_iter()
            .map(|(n, v)| {
                let start = v.data().as_ptr() as usize - base;
                let loc = TensorLoc {
                    dtype: v.dtype(),
                    shape: v.shape().to_vec(),
                    bytes: start..start + v.data().len(),
                };
                (n, loc)
            })
            .collect();
        let extras = meta
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "format" | "version" | "env_id" | "fields" | "episodes"
                )
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let file = EpisodeFile {
            name,
            buf,
            env_id,
            fields,
            episodes,
            extras,
            tensors,
        };
        file.validate_data()?;
        Ok(file)
    }

    fn field_err(&self, episode: usize, field: &str, detail: String) -> DataError {
        DataError::Field {
            file: self.name.clone(),
            episode,
            field: field.to_string(),
            detail,
        }
    }

    /// The tensor `name` with this dtype and shape, or an error naming what differs.
    fn tensor(
        &self,
        ep: usize,
        field: &str,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
    ) -> Result<&[u8]> {
        let loc = self
            .tensors
            .get(name)
            .ok_or_else(|| self.field_err(ep, field, format!("tensor `{name}` is missing")))?;
        if loc.dtype != dtype || loc.shape != shape {
            return Err(self.field_err(
                ep,
                field,
                format!(
                    "tensor `{name}` is {:?} {:?}, expected {dtype:?} {shape:?}",
                    loc.dtype, loc.shape
                ),
            ));
        }
        Ok(&self.buf[loc.bytes.clone()])
    }

    fn validate_data(&self) -> Result<()> {
        let mut used = HashSet::new();
        for (i, ep) in self.episodes.iter().enumerate() {
            let t = ep.length;
            if t == 0 {
                return Err(self.field_err(i, "rewards", "episode has length 0".into()));
            }
            let name = format!("episode_{i}.rewards");
            let rewards = read_le(
                self.tensor(i, "rewards", &name, Dtype::F32, &[t])?,
                f32::from_le_bytes,
            );
            if let Some(k) = rewards.iter().position(|r| !r.is_finite()) {
                return Err(self.field_err(
                    i,
                    "rewards",
                    format!("reward at step {k} is {}", rewards[k]),
                ));
            }
            used.insert(name);
            for f in &self.fields {
                let base = format!("episode_{i}.{}", f.name);
                let mut shape = vec![t];
                shape.extend(&f.shape);
                match f.modality {
                    FieldModality::Text => {
                        let (bn, on) = (format!("{base}.bytes"), format!("{base}.offsets"));
                        let offsets = read_le(
                            self.tensor(i, &f.name, &on, Dtype::I64, &[t + 1])?,
                            i64::from_le_bytes,
                        );
                        let n = self
                            .tensors
                            .get(&bn)
                            .map_or(0, |l| l.shape.iter().product());
                        let bytes = self.tensor(i, &f.name, &bn, Dtype::U8, &[n])?;
                        let monotone = offsets.first() == Some(&0)
                            && offsets.windows(2).all(|w| w[0] <= w[1])
                            && offsets.last() == Some(&(n as i64));
                        if !monotone {
                            return Err(self.field_err(
                                i,
                                &f.name,
                                format!("text offsets must rise from 0 to {n} (the byte count)"),
                            ));
                        }
                        for k in 0..t {
                            let s = &bytes[offsets[k] as usize..offsets[k + 1] as usize];
                            if let Err(e) = std::str::from_utf8(s) {
                                return Err(self.field_err(
                                    i,
                                    &f.name,
                                    format!("text at step {k} is not UTF-8: {e}"),
                                ));
                            }
                        }
                        used.insert(bn);
                        used.insert(on);
                    }
                    FieldModality::Image => {
                        self.tensor(i, &f.name, &base, Dtype::U8, &shape)?;
                        used.insert(base);
                    }
                    FieldModality::Discrete => {
                        let v = read_le(
                            self.tensor(i, &f.name, &base, Dtype::I64, &shape)?,
                            i64::from_le_bytes,
                        );
                        let n = i64::from(f.num_values.unwrap_or(0));
                        if let Some(k) = v.iter().position(|&x| x < 0 || x >= n) {
                            return Err(self.field_err(
                                i,
                                &f.name,
                                format!("value {} at flat index {k} is outside [0, {n})", v[k]),
                            ));
                        }
                        used.insert(base);
                    }
                    FieldModality::Continuous => {
                        let v = read_le(
                            self.tensor(i, &f.name, &base, Dtype::F32, &shape)?,
                            f32::from_le_bytes,
                        );
                        if let Some(k) = v.iter().position(|x| !x.is_finite()) {
                            return Err(self.field_err(
                                i,
                                &f.name,
                                format!("value {} at flat index {k} is not finite", v[k]),
                            ));
                        }
                        used.insert(base);
                    }
                }
            }
        }
        let mut extra: Vec<&String> = self.tensors.keys().filter(|k| !used.contains(*k)).collect();
        extra.sort();
        if let Some(k) = extra.first() {
            return Err(DataError::Format {
                file: self.name.clone(),
                detail: format!("tensor `{k}` belongs to no declared episode and field"),
            });
        }
        Ok(())
    }

    /// The file name as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Environment id, e.g. `CartPole-v1`.
    pub fn env_id(&self) -> &str {
        &self.env_id
    }

    /// Field descriptions.
    pub fn fields(&self) -> &[FieldMeta] {
        &self.fields
    }

    /// Episode lengths and returns.
    pub fn episodes(&self) -> &[EpisodeMeta] {
        &self.episodes
    }

    /// Number of episodes.
    pub fn len(&self) -> usize {
        self.episodes.len()
    }

    /// Whether the file holds no episode.
    pub fn is_empty(&self) -> bool {
        self.episodes.is_empty()
    }

    /// Free-form metadata.
    pub fn extras(&self) -> &BTreeMap<String, String> {
        &self.extras
    }

    /// The fields as a sequence-builder spec; text fields use `text_tokenizer` (a name or a model path).
    pub fn env_spec(&self, text_tokenizer: &str) -> EnvSpec {
        env_spec(&self.fields, text_tokenizer)
    }

    /// Rewards of episode `i`.
    pub fn rewards(&self, i: usize) -> Result<Vec<f32>> {
        let t = self.check_episode(i)?.length;
        Ok(read_le(
            self.tensor(
                i,
                "rewards",
                &format!("episode_{i}.rewards"),
                Dtype::F32,
                &[t],
            )?,
            f32::from_le_bytes,
        ))
    }

    fn check_episode(&self, i: usize) -> Result<&EpisodeMeta> {
        self.episodes
            .get(i)
            .ok_or_else(|| DataError::NoSuchEpisode {
                file: self.name.clone(),
                episode: i,
                count: self.episodes.len(),
            })
    }

    /// The values of one field of episode `i`, one [`FieldValue`] per timestep.
    pub fn field_values(&self, i: usize, f: &FieldMeta) -> Result<Vec<FieldValue>> {
        let t = self.check_episode(i)?.length;
        let base = format!("episode_{i}.{}", f.name);
        let mut shape = vec![t];
        shape.extend(&f.shape);
        let per = f.values_per_step();
        Ok(match f.modality {
            FieldModality::Text => {
                let offsets = read_le(
                    self.tensor(i, &f.name, &format!("{base}.offsets"), Dtype::I64, &[t + 1])?,
                    i64::from_le_bytes,
                );
                let n = offsets[t] as usize;
                let bytes = self.tensor(i, &f.name, &format!("{base}.bytes"), Dtype::U8, &[n])?;
                (0..t)
                    .map(|k| {
                        FieldValue::Text(
                            String::from_utf8_lossy(
                                &bytes[offsets[k] as usize..offsets[k + 1] as usize],
                            )
                            .into_owned(),
                        )
                    })
                    .collect()
            }
            FieldModality::Image => {
                let bytes = self.tensor(i, &f.name, &base, Dtype::U8, &shape)?;
                bytes
                    .chunks_exact(per)
                    .map(|px| {
                        FieldValue::Image(Image {
                            height: f.shape[0],
                            width: f.shape[1],
                            channels: f.shape[2],
                            pixels: ImagePixels::U8(px.to_vec()),
                        })
                    })
                    .collect()
            }
            FieldModality::Discrete => {
                let v = read_le(
                    self.tensor(i, &f.name, &base, Dtype::I64, &shape)?,
                    i64::from_le_bytes,
                );
                chunk_values(v, per, t)
                    .into_iter()
                    .map(FieldValue::Discrete)
                    .collect()
            }
            FieldModality::Continuous => {
                let v = read_le(
                    self.tensor(i, &f.name, &base, Dtype::F32, &shape)?,
                    f32::from_le_bytes,
                );
                chunk_values(v, per, t)
                    .into_iter()
                    .map(FieldValue::Continuous)
                    .collect()
            }
        })
    }

    /// Episode `i` as timesteps for the sequence builder.
    pub fn timesteps(&self, i: usize) -> Result<Vec<Timestep>> {
        let t = self.check_episode(i)?.length;
        let mut steps = vec![Timestep::default(); t];
        for f in &self.fields {
            for (k, v) in self.field_values(i, f)?.into_iter().enumerate() {
                let map = match f.role {
                    Role::Observation => &mut steps[k].observations,
                    Role::Action => &mut steps[k].actions,
                };
                map.insert(f.name.clone(), v);
            }
        }
        Ok(steps)
    }

    /// Tokenize episode `i` under `config`, text fields with `text_tokenizer`.
    pub fn tokenize(&self, i: usize, builder: &SequenceBuilder) -> Result<TokenSequence> {
        let steps = self.timesteps(i)?;
        builder
            .episode(&steps)
            .map_err(|source| DataError::Tokenize {
                file: self.name.clone(),
                episode: i,
                source: Box::new(source),
            })
    }

    /// A sequence builder for this file's fields.
    pub fn builder(&self, config: &GatoConfig, text_tokenizer: &str) -> Result<SequenceBuilder> {
        SequenceBuilder::new(config, &self.env_spec(text_tokenizer)).map_err(|source| {
            DataError::Tokenize {
                file: self.name.clone(),
                episode: 0,
                source: Box::new(source),
            }
        })
    }

    /// Figures for `gato episodes`.
    pub fn summary(&self) -> Summary {
        let returns: Vec<f64> = self.episodes.iter().map(|e| e.episode_return).collect();
        Summary {
            file: self.name.clone(),
            env_id: self.env_id.clone(),
            episodes: self.episodes.len(),
            steps: self.episodes.iter().map(|e| e.length).sum(),
            fields: self.fields.clone(),
            mean_return: if returns.is_empty() {
                f64::NAN
            } else {
                returns.iter().sum::<f64>() / returns.len() as f64
            },
            returns,
            extras: self.extras.clone(),
        }
    }
}

/// Split a flat `[T · per]` vector into `T` vectors of `per` values (`per` = 1 for scalars).
fn chunk_values<T: Clone>(v: Vec<T>, per: usize, t: usize) -> Vec<Vec<T>> {
    if per == 0 {
        return vec![Vec::new(); t];
    }
    v.chunks_exact(per).map(<[T]>::to_vec).collect()
}

/// Field descriptions (as an episode file or a live simulator gives them) as a sequence-builder spec; text fields
/// use `text_tokenizer` (a name or a model path).
pub fn env_spec(fields: &[FieldMeta], text_tokenizer: &str) -> EnvSpec {
    let spec = |f: &FieldMeta| FieldSpec {
        key: f.name.clone(),
        kind: match f.modality {
            FieldModality::Text => FieldKind::Text {
                tokenizer: text_tokenizer.to_string(),
            },
            FieldModality::Image => FieldKind::Image {
                channels: f.shape.get(2).copied().unwrap_or(3),
            },
            FieldModality::Discrete => FieldKind::Discrete {
                num_values: f.num_values.unwrap_or(1),
            },
            FieldModality::Continuous => FieldKind::Continuous {
                mu_law: f.mu_law.unwrap_or(true),
                bounds: f.bounds,
            },
        },
        shape: f.shape.clone(),
    };
    let with_role = |role: Role| fields.iter().filter(|f| f.role == role).map(spec).collect();
    EnvSpec {
        observations: with_role(Role::Observation),
        actions: with_role(Role::Action),
    }
}
