//! `gato tokenize`: values, text or an image → one Gato observation (design.md §4), printed as a table or JSON.

use std::collections::BTreeMap;
use std::path::Path;

use gato_core::GatoConfig;
use gato_tokenizers::{
    EnvSpec, FieldKind, FieldSpec, FieldValue, Image, ImagePixels, Padding, SequenceBuilder,
    Timestep, TokenSequence,
};
use serde_json::json;

use super::Result;
use crate::cli::TokenizeArgs;
use crate::error::CliError;
use crate::output;

/// Parse a comma-separated list; errors name the flag, the index and the text.
fn parse_list<T: std::str::FromStr>(flag: &'static str, s: &str) -> Result<Vec<T>> {
    s.split(',')
        .map(str::trim)
        .enumerate()
        .map(|(i, x)| {
            x.parse().map_err(|_| CliError::Argument {
                flag,
                detail: format!("`{x}` at index {i} is not a valid number"),
            })
        })
        .collect()
}

/// Parse comma-separated continuous values as f64 and narrow them to f32: a finite value beyond the f32 range
/// (`1e308`) is an error naming it, not an infinity the tokenizer then reports as `inf`. NaN and ±Inf typed as such
/// pass through, for the tokenizer to reject with the field and index.
fn parse_f32_list(flag: &'static str, s: &str) -> Result<Vec<f32>> {
    let wide: Vec<f64> = parse_list(flag, s)?;
    wide.iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.is_finite() && v.abs() > f32::MAX as f64 {
                return Err(CliError::Argument {
                    flag,
                    detail: format!(
                        "{v:e} at index {i} is outside the f32 range (magnitude at most {:e})",
                        f32::MAX
                    ),
                });
            }
            Ok(v as f32)
        })
        .collect()
}

/// Decode a PNG/JPEG into HWC u8 with 1, 3 or 4 channels.
pub fn read_image(path: &Path) -> Result<Image> {
    let err = |reason: String| CliError::Image {
        path: path.to_path_buf(),
        reason,
    };
    let img = image::ImageReader::open(path)
        .map_err(|e| err(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?
        .decode()
        .map_err(|e| err(e.to_string()))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (channels, pixels) = match img.color().channel_count() {
        1 | 2 => (1, img.into_luma8().into_raw()),
        4 => (4, img.into_rgba8().into_raw()),
        _ => (3, img.into_rgb8().into_raw()),
    };
    Ok(Image {
        height: h,
        width: w,
        channels,
        pixels: ImagePixels::U8(pixels),
    })
}

/// Tokenizing involves no model: the config's `image_channels` (the patch embedding's input) follows the images
/// given, so a grayscale or RGBA image tokenizes under any preset.
fn channels_of_images(config: &mut GatoConfig, spec: &EnvSpec) {
    if let Some(c) = spec.observations.iter().find_map(|f| match f.kind {
        FieldKind::Image { channels } => Some(channels),
        _ => None,
    }) {
        config.image_channels = c;
    }
}

pub fn run(args: &TokenizeArgs) -> Result<()> {
    let mut config = GatoConfig::from_name_or_path(&args.config)?;
    if let Some(path) = &args.episode {
        let file = gato_data::EpisodeFile::open(path)?;
        channels_of_images(&mut config, &file.env_spec(&args.text_tokenizer));
        let builder = file.builder(&config, &args.text_tokenizer)?;
        let seq = file.tokenize(args.episode_index, &builder)?;
        print_sequence(&seq, args.format.json);
        return Ok(());
    }
    let mut spec = EnvSpec::default();
    let mut obs = BTreeMap::new();
    let text = match (&args.text, &args.text_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(path)) => {
            Some(
                std::fs::read_to_string(path).map_err(|e| CliError::Argument {
                    flag: "text-file",
                    detail: format!(
                        "cannot read {}: {}",
                        path.display(),
                        if path.is_dir() {
                            "is a directory".to_string()
                        } else {
                            e.to_string()
                        }
                    ),
                })?,
            )
        }
        (None, None) => None,
    };
    if let Some(text) = text {
        spec.observations.push(FieldSpec {
            key: "text".into(),
            kind: FieldKind::Text {
                tokenizer: args.text_tokenizer.clone(),
            },
            shape: vec![],
        });
        obs.insert("text".to_string(), FieldValue::Text(text));
    }
    if let Some(path) = &args.image {
        let img = read_image(path)?;
        spec.observations.push(FieldSpec {
            key: "image".into(),
            kind: FieldKind::Image {
                channels: img.channels,
            },
            shape: vec![img.height, img.width, img.channels],
        });
        obs.insert("image".to_string(), FieldValue::Image(img));
    }
    if let Some(list) = &args.discrete {
        let v: Vec<i64> = parse_list("discrete", list)?;
        spec.observations.push(FieldSpec {
            key: "discrete".into(),
            kind: FieldKind::Discrete {
                num_values: config.discrete_values_size as u32,
            },
            shape: vec![v.len()],
        });
        obs.insert("discrete".to_string(), FieldValue::Discrete(v));
    }
    if let Some(list) = &args.continuous {
        let v = parse_f32_list("continuous", list)?;
        spec.observations.push(FieldSpec {
            key: "continuous".into(),
            kind: FieldKind::Continuous {
                mu_law: !args.no_mu_law,
                bounds: None,
            },
            shape: vec![v.len()],
        });
        obs.insert("continuous".to_string(), FieldValue::Continuous(v));
    }
    if obs.is_empty() {
        return Err(CliError::Argument {
            flag: "continuous|discrete|text|image",
            detail: "nothing to tokenize: give at least one of --continuous, --discrete, --text, --text-file, --image".into(),
        });
    }
    let padding = if args.pad {
        Padding::Zero
    } else {
        Padding::Reject
    };
    channels_of_images(&mut config, &spec);
    let builder = SequenceBuilder::new(&config, &spec)?.with_image_padding(padding);
    let mut seq = TokenSequence::default();
    builder.push_observation(
        0,
        &Timestep {
            observations: obs,
            actions: BTreeMap::new(),
        },
        &mut seq,
    )?;
    print_sequence(&seq, args.format.json);
    Ok(())
}

/// Print tokens as a table or JSON (shared with episode tokenization).
pub fn print_sequence(seq: &TokenSequence, as_json: bool) {
    if as_json {
        let tokens: Vec<_> = seq
            .tokens
            .iter()
            .map(|t| {
                json!({
                    "id": t.id,
                    "modality": t.modality,
                    "field": seq.fields[t.field as usize],
                    "timestep": t.timestep,
                    "local_position": t.local_position,
                    "patch_position": t.patch_position,
                    "loss": t.loss,
                })
            })
            .collect();
        output::json(
            &json!({"tokens": tokens, "num_patches": seq.patches.len() / seq.patch_len.max(1)}),
        );
        return;
    }
    let mut s = format!(
        "{:>5}  {:>6}  {:<10}  {:<24}  {:>4}  {:>5}  {:<14}  {}\n",
        "index", "id", "modality", "field", "t", "local", "patch r/R c/C", "loss"
    );
    for (i, t) in seq.tokens.iter().enumerate() {
        let local = t.local_position.map_or("-".to_string(), |l| l.to_string());
        let patch = t.patch_position.map_or("-".to_string(), |p| {
            format!("{}/{} {}/{}", p.row, p.rows, p.col, p.cols)
        });
        let id = if t.modality == gato_core::Modality::Image {
            format!("p{}", t.id)
        } else {
            t.id.to_string()
        };
        s += &format!(
            "{i:>5}  {id:>6}  {:<10}  {:<24}  {:>4}  {local:>5}  {patch:<14}  {}\n",
            format!("{:?}", t.modality).to_lowercase(),
            seq.fields[t.field as usize],
            t.timestep,
            u8::from(t.loss)
        );
    }
    output::print(&s);
}
