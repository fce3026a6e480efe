//! Animated GIFs of evaluated episodes (`gato eval --video DIR`), encoded by the `image` crate.

use std::path::Path;

use gato_tokenizers::{Image, ImagePixels};
use image::codecs::gif::{GifEncoder, Repeat};
use image::imageops::{resize, FilterType};
use image::{Delay, Frame, RgbaImage};

/// Frames shown per second.
const FPS: u32 = 20;
/// At most this many frames are kept (evenly spaced), so a long episode stays a small file.
const MAX_FRAMES: usize = 300;
/// Frames larger than this on their long side are scaled down to it.
const MAX_SIDE: u32 = 256;

/// Write `frames` (RGB or RGBA, u8) as a looping GIF at `path`.
pub fn write(path: &Path, frames: &[Image]) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut enc = GifEncoder::new_with_speed(std::io::BufWriter::new(file), 10);
    enc.set_repeat(Repeat::Infinite)
        .map_err(|e| e.to_string())?;
    let stride = frames.len().div_ceil(MAX_FRAMES).max(1);
    let delay = Delay::from_numer_denom_ms(1000 * stride as u32, FPS);
    for f in frames.iter().step_by(stride) {
        let ImagePixels::U8(px) = &f.pixels else {
            return Err("frames must be u8".into());
        };
        let rgba: Vec<u8> = match f.channels {
            4 => px.clone(),
            3 => px
                .chunks_exact(3)
                .flat_map(|p| [p[0], p[1], p[2], 255])
                .collect(),
            c => return Err(format!("frames with {c} channels")),
        };
        let mut img =
            RgbaImage::from_raw(f.width as u32, f.height as u32, rgba).ok_or_else(|| {
                format!(
                    "frame of {}x{} does not match its pixels",
                    f.width, f.height
                )
            })?;
        let long = img.width().max(img.height());
        if long > MAX_SIDE {
            let (w, h) = (
                img.width() * MAX_SIDE / long,
                img.height() * MAX_SIDE / long,
            );
            img = resize(&img, w.max(1), h.max(1), FilterType::Triangle);
        }
        enc.encode_frame(Frame::from_parts(img, 0, 0, delay))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
