//! Images → 16×16 patches (paper §2.1, App. B; design.md §3).
//!
//! Input is HWC, `u8` (0–255) or `f32` in [0, 1], with 1 (grayscale), 3 (RGB) or 4 (frame stack / RGBA) channels.
//! Patches are non-overlapping `P×P` squares in **raster order** (row by row, left to right), each flattened
//! row-major as (y, x, c). Pixels are scaled to [−1, 1] and then **divided by √P** (= 4 for P = 16). Patch `r` of
//! `R` rows covers the normalised rows `[r/R, (r+1)/R)` (and likewise for columns), recorded as a
//! [`PatchPosition`].
//!
//! Height and width must be multiples of P: otherwise [`ImagePatchTokenizer::patchify`] returns an error naming
//! the dimension, unless the caller asks for [`Padding::Zero`], which pads the bottom and right edges with black
//! pixels (value 0, i.e. −1/√P after normalisation) up to the next multiple.

use gato_core::{GatoConfig, PatchPosition};

use crate::error::{Error, Result};

/// Pixel storage of an HWC image.
#[derive(Debug, Clone, Copy)]
pub enum Pixels<'a> {
    /// 0–255.
    U8(&'a [u8]),
    /// [0, 1]; anything else (or NaN) is an error.
    F32(&'a [f32]),
}

/// A borrowed HWC image.
#[derive(Debug, Clone, Copy)]
pub struct ImageRef<'a> {
    /// The pixels, `height · width · channels` values.
    pub pixels: Pixels<'a>,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Channels (1, 3 or 4).
    pub channels: usize,
}

/// What to do when a side is not a multiple of the patch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// Return an error naming the side (default).
    #[default]
    Reject,
    /// Pad bottom/right with black pixels to the next multiple.
    Zero,
}

/// The patches of one image: `rows · cols` patches of `P·P·C` values each, in raster order.
#[derive(Debug, Clone, PartialEq)]
pub struct Patches {
    /// Patch rows.
    pub rows: usize,
    /// Patch columns.
    pub cols: usize,
    /// Patch side P.
    pub patch_size: usize,
    /// Channels C.
    pub channels: usize,
    /// `[rows·cols, P, P, C]`, row-major.
    pub data: Vec<f32>,
}

impl Patches {
    /// Number of patches.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    /// Whether there are no patches.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per patch, `P·P·C`.
    pub fn patch_len(&self) -> usize {
        self.patch_size * self.patch_size * self.channels
    }

    /// Values of patch `i` (raster order).
    pub fn patch(&self, i: usize) -> &[f32] {
        &self.data[i * self.patch_len()..(i + 1) * self.patch_len()]
    }

    /// Position of patch `i` in the image.
    pub fn position(&self, i: usize) -> PatchPosition {
        PatchPosition {
            row: (i / self.cols) as u32,
            rows: self.rows as u32,
            col: (i % self.cols) as u32,
            cols: self.cols as u32,
        }
    }
}

/// Cuts images into normalised patches.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePatchTokenizer {
    patch_size: usize,
    /// `1/√P`.
    scale: f32,
    /// Normalised value of every u8.
    lut: Vec<f32>,
}

impl ImagePatchTokenizer {
    /// Patches of side `config.img_patch_size`.
    pub fn new(config: &GatoConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::with_patch_size(config.img_patch_size))
    }

    /// Patches of side `patch_size` (≥ 1).
    pub fn with_patch_size(patch_size: usize) -> Self {
        let patch_size = patch_size.max(1);
        let scale = 1.0 / (patch_size as f32).sqrt();
        let lut = (0..256)
            .map(|v| (v as f32 / 255.0 * 2.0 - 1.0) * scale)
            .collect();
        ImagePatchTokenizer {
            patch_size,
            scale,
            lut,
        }
    }

    /// The patch side P.
    pub fn patch_size(&self) -> usize {
        self.patch_size
    }

    /// The normalised value of a pixel: `(2·v − 1)/√P` for v in [0, 1].
    pub fn normalise(&self, v01: f32) -> f32 {
        (v01 * 2.0 - 1.0) * self.scale
    }

    fn validate(
        &self,
        field: &str,
        img: &ImageRef<'_>,
        padding: Padding,
    ) -> Result<(usize, usize)> {
        if !matches!(img.channels, 1 | 3 | 4) {
            return Err(Error::Shape {
                field: field.into(),
                detail: format!("{} channels; images have 1, 3 or 4", img.channels),
            });
        }
        let n = img
            .height
            .checked_mul(img.width)
            .and_then(|hw| hw.checked_mul(img.channels))
            .ok_or_else(|| Error::Shape {
                field: field.into(),
                detail: format!("{}×{}×{} overflows", img.height, img.width, img.channels),
            })?;
        let len = match img.pixels {
            Pixels::U8(p) => p.len(),
            Pixels::F32(p) => p.len(),
        };
        if len != n {
            return Err(Error::Shape {
                field: field.into(),
                detail: format!(
                    "{len} pixel values for a {}×{}×{} image ({n} expected)",
                    img.height, img.width, img.channels
                ),
            });
        }
        if img.height == 0 || img.width == 0 {
            return Err(Error::Shape {
                field: field.into(),
                detail: format!("empty image ({}×{})", img.height, img.width),
            });
        }
        let p = self.patch_size;
        for (side, v) in [("height", img.height), ("width", img.width)] {
            if v % p != 0 && padding == Padding::Reject {
                return Err(Error::Shape {
                    field: field.into(),
                    detail: format!(
                        "image {side} {v} is not a multiple of the patch size {p}; pad (Padding::Zero, --pad) or resize first"
                    ),
                });
            }
        }
        if let Pixels::F32(px) = img.pixels {
            if let Some((i, &v)) = px
                .iter()
                .enumerate()
                .find(|(_, v)| !(0.0..=1.0).contains(*v))
            {
                return Err(Error::OutOfRange {
                    field: field.into(),
                    what: "pixel",
                    index: i,
                    value: v.to_string(),
                    allowed: "[0, 1] for f32 images".into(),
                });
            }
        }
        Ok((img.height.div_ceil(p), img.width.div_ceil(p)))
    }

    /// Cut `img` into patches, appending `rows·cols·P·P·C` values to `out`; returns `(rows, cols)`.
    pub fn patchify_into(
        &self,
        field: &str,
        img: &ImageRef<'_>,
        padding: Padding,
        out: &mut Vec<f32>,
    ) -> Result<(usize, usize)> {
        let (rows, cols) = self.validate(field, img, padding)?;
        let (p, c, w, h) = (self.patch_size, img.channels, img.width, img.height);
        let pad_value = self.normalise(0.0);
        let start = out.len();
        out.resize(start + rows * cols * p * p * c, pad_value);
        let dst = &mut out[start..];
        let row_len = p * c; // values of one pixel row of one patch
        for pr in 0..rows {
            for y in 0..p {
                let iy = pr * p + y;
                if iy >= h {
                    break; // padded rows keep the pad value
                }
                for pc in 0..cols {
                    let x0 = pc * p;
                    let n = (w - x0).min(p) * c; // fewer than P pixels at a padded right edge
                    let src = iy * w * c + x0 * c;
                    let d = ((pr * cols + pc) * p + y) * row_len;
                    let dst_row = &mut dst[d..d + n];
                    match img.pixels {
                        Pixels::U8(px) => {
                            for (o, &v) in dst_row.iter_mut().zip(&px[src..src + n]) {
                                *o = self.lut[v as usize];
                            }
                        }
                        Pixels::F32(px) => {
                            for (o, &v) in dst_row.iter_mut().zip(&px[src..src + n]) {
                                *o = self.normalise(v);
                            }
                        }
                    }
                }
            }
        }
        Ok((rows, cols))
    }

    /// Cut `img` into patches.
    pub fn patchify(&self, field: &str, img: &ImageRef<'_>, padding: Padding) -> Result<Patches> {
        let mut data = Vec::new();
        let (rows, cols) = self.patchify_into(field, img, padding, &mut data)?;
        Ok(Patches {
            rows,
            cols,
            patch_size: self.patch_size,
            channels: img.channels,
            data,
        })
    }
}

/// Put patches back together into a normalised HWC image of `rows·P × cols·P` (the inverse of the raster order).
pub fn reassemble(p: &Patches) -> Vec<f32> {
    let (ps, c) = (p.patch_size, p.channels);
    let w = p.cols * ps;
    let mut img = vec![0.0; p.rows * ps * w * c];
    for i in 0..p.len() {
        let (pr, pc) = (i / p.cols, i % p.cols);
        let patch = p.patch(i);
        for y in 0..ps {
            let dst = ((pr * ps + y) * w + pc * ps) * c;
            img[dst..dst + ps * c].copy_from_slice(&patch[y * ps * c..(y + 1) * ps * c]);
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tok() -> ImagePatchTokenizer {
        ImagePatchTokenizer::with_patch_size(16)
    }

    proptest! {
        /// Reassembling the patches in raster order reproduces the normalised image exactly.
        #[test]
        fn raster_order_round_trip(rows in 1usize..5, cols in 1usize..5, ch in prop::sample::select(vec![1usize, 3, 4]), seed in any::<u64>()) {
            let (h, w) = (rows * 16, cols * 16);
            let px: Vec<u8> = (0..h * w * ch).map(|i| (i as u64).wrapping_mul(seed | 1).wrapping_shr(7) as u8).collect();
            let t = tok();
            let p = t.patchify("img", &ImageRef { pixels: Pixels::U8(&px), height: h, width: w, channels: ch }, Padding::Reject).unwrap();
            prop_assert_eq!((p.rows, p.cols, p.len()), (rows, cols, rows * cols));
            let want: Vec<f32> = px.iter().map(|&v| (v as f32 / 255.0 * 2.0 - 1.0) / 4.0).collect();
            prop_assert_eq!(reassemble(&p), want);
        }

        /// The patch intervals tile [0, 1) exactly in both directions.
        #[test]
        fn intervals_tile_unit_square(rows in 1usize..20, cols in 1usize..20) {
            let p = Patches { rows, cols, patch_size: 16, channels: 1, data: vec![] };
            let mut row_end = 0.0;
            for r in 0..rows {
                let (a, b) = p.position(r * cols).row_interval();
                prop_assert_eq!(a, row_end);
                prop_assert!(b > a);
                row_end = b;
            }
            prop_assert_eq!(row_end, 1.0);
            let mut col_end = 0.0;
            for c in 0..cols {
                let (a, b) = p.position(c).col_interval();
                prop_assert_eq!(a, col_end);
                col_end = b;
            }
            prop_assert_eq!(col_end, 1.0);
        }

        /// Random sizes and bytes never panic.
        #[test]
        fn arbitrary_input_never_panics(h in 0usize..40, w in 0usize..40, c in 0usize..6, len in 0usize..3000, pad in any::<bool>()) {
            let px = vec![128u8; len];
            let img = ImageRef { pixels: Pixels::U8(&px), height: h, width: w, channels: c };
            let _ = tok().patchify("img", &img, if pad { Padding::Zero } else { Padding::Reject });
            let fx = vec![0.5f32; len];
            let img = ImageRef { pixels: Pixels::F32(&fx), height: h, width: w, channels: c };
            let _ = tok().patchify("img", &img, Padding::Zero);
        }
    }

    #[test]
    fn sizes_not_multiple_of_16_are_errors_unless_padding() {
        let px = vec![255u8; 20 * 33 * 3];
        let img = ImageRef {
            pixels: Pixels::U8(&px),
            height: 20,
            width: 33,
            channels: 3,
        };
        let msg = tok()
            .patchify("frame", &img, Padding::Reject)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("frame") && msg.contains("height 20") && msg.contains("16"),
            "{msg}"
        );
        let p = tok().patchify("frame", &img, Padding::Zero).unwrap();
        assert_eq!((p.rows, p.cols), (2, 3));
        // Real pixel (white) → +1/4; padding (black) → −1/4.
        assert_eq!(p.patch(0)[0], 0.25);
        let last = p.patch(5);
        assert_eq!(*last.last().unwrap(), -0.25);
    }

    #[test]
    fn f32_pixels_outside_unit_interval_are_errors() {
        let mut px = vec![0.5f32; 16 * 16];
        px[17] = f32::NAN;
        let img = ImageRef {
            pixels: Pixels::F32(&px),
            height: 16,
            width: 16,
            channels: 1,
        };
        let msg = tok()
            .patchify("depth", &img, Padding::Reject)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("depth") && msg.contains("index 17"), "{msg}");
        px[17] = 1.5;
        let img = ImageRef {
            pixels: Pixels::F32(&px),
            height: 16,
            width: 16,
            channels: 1,
        };
        assert!(tok().patchify("depth", &img, Padding::Reject).is_err());
    }

    #[test]
    fn normalisation_endpoints() {
        let px = [0u8, 255, 0, 255];
        let img = ImageRef {
            pixels: Pixels::U8(&px),
            height: 2,
            width: 2,
            channels: 1,
        };
        let p = ImagePatchTokenizer::with_patch_size(2)
            .patchify("x", &img, Padding::Reject)
            .unwrap();
        let s = 1.0 / 2f32.sqrt();
        assert_eq!(p.data, vec![-s, s, -s, s]);
    }
}
