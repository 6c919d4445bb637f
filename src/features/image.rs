//! Images as the Revelio reference pipelines see them, pixel for pixel.
//!
//! - Decoding: JPEG, PNG and WebP (the `image` crate), converted to 8-bit RGB the way PIL's
//!   `Image.open(f).convert("RGB")` does (what torchvision's loader and `datasets` do): alpha is
//!   dropped (not composited), grayscale is replicated, Adobe CMYK JPEGs become
//!   `(255 - C) * (255 - K) / 255` rounded (PIL and zune-jpeg agree), 16-bit colour keeps the
//!   high byte (PIL's `RGB;16B` raw mode), and 16-bit grayscale is clipped at 255 (PIL opens it
//!   as `I;16`, whose RGB conversion clips). EXIF orientation is ignored, as PIL ignores it.
//! - Evaluation preprocessing: torchvision's `Resize(R)` (short side to R, long side
//!   `int(R * long / short)`), with PIL's bilinear filter, then `CenterCrop(R)`, `ToTensor()` and
//!   `Normalize(0.5, 0.5)`: [3, R, R] f32 in [-1, 1].
//! - Diff-C's training augmentation: torchvision's `RandomResizedCrop(R, scale=(0.8, 1.0),
//!   ratio=(3/4, 4/3))` and `RandomHorizontalFlip(0.5)`, with the same sampling procedure but
//!   draws from [`crate::rng`] seeded per (seed, epoch, image) instead of torch's global
//!   generator, so an image's crop does not depend on batch size, order or worker.
//!
//! PIL's resampling (libImaging/Resample.c, `ImagingResample`): separable, a horizontal pass
//! then a vertical one, each output pixel a weighted sum of the input pixels under a filter
//! (bilinear: the triangle; bicubic, for CLIP: Keys' cubic with a = -0.5) whose support is scaled
//! by the downscaling factor (so downscaling is antialiased). Weights are computed in f64,
//! normalised to sum 1, then turned into fixed point with 22 fractional bits (`(int)(w * 2^22 ±
//! 0.5)`); sums start at 2^21 (round half up) and the result
//! is shifted right 22 and clamped to 0..255. Both passes store uint8, as PIL does, so the
//! intermediate rounding is PIL's too. This is Pillow's algorithm up to version 12 (the
//! reference pins 9.5.0); Pillow 13 sometimes runs the vertical pass first, which moves some
//! pixels by one level.

use crate::rng;
use crate::{Error, Result};
use image::DynamicImage;
use std::path::Path;

/// An 8-bit RGB image, rows of interleaved RGB: `data` is [height, width, 3].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl RgbImage {
    /// `data`: [height, width, 3] interleaved RGB.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<RgbImage> {
        if width == 0 || height == 0 || data.len() != width * height * 3 {
            return Err(Error::Internal(format!(
                "RGB image {width}x{height} needs {} bytes, got {}",
                width * height * 3,
                data.len()
            )));
        }
        Ok(RgbImage { width, height, data })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// [height, width, 3] interleaved RGB.
    pub fn pixels(&self) -> &[u8] {
        &self.data
    }

    /// Decodes a JPEG, PNG or WebP (found from its content, as PIL does) to RGB as PIL's
    /// `convert("RGB")` would. The error says what is wrong; callers add the path.
    pub fn decode(bytes: &[u8]) -> Result<RgbImage> {
        let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| Error::BadInput(format!("cannot read image: {e}")))?;
        if reader.format().is_none() {
            return Err(Error::BadInput("not a JPEG, PNG or WebP image (unrecognised content)".into()));
        }
        let img = reader.decode().map_err(|e| Error::BadInput(format!("cannot decode image: {e}")))?;
        Ok(to_rgb_like_pil(img))
    }

    /// Reads and decodes an image file; errors name the path.
    pub fn open(path: &Path) -> Result<RgbImage> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        RgbImage::decode(&bytes).map_err(|e| Error::format(path, e.to_string()))
    }

    /// Pixels `top..top + height`, `left..left + width` (must lie inside the image).
    pub fn crop(&self, top: usize, left: usize, height: usize, width: usize) -> Result<RgbImage> {
        if height == 0 || width == 0 || top + height > self.height || left + width > self.width {
            return Err(Error::Internal(format!(
                "crop {height}x{width} at ({top}, {left}) does not fit in a {}x{} image",
                self.height, self.width
            )));
        }
        let mut data = Vec::with_capacity(height * width * 3);
        for y in top..top + height {
            let row = (y * self.width + left) * 3;
            data.extend_from_slice(&self.data[row..row + width * 3]);
        }
        Ok(RgbImage { width, height, data })
    }

    /// Mirrors left and right (torchvision's `hflip`).
    pub fn hflip(&self) -> RgbImage {
        let mut data = Vec::with_capacity(self.data.len());
        for row in self.data.chunks_exact(self.width * 3) {
            for px in row.chunks_exact(3).rev() {
                data.extend_from_slice(px);
            }
        }
        RgbImage { width: self.width, height: self.height, data }
    }

    /// PIL's `Image.resize((width, height), Image.BILINEAR)` (see the module docs).
    pub fn resize_bilinear(&self, width: usize, height: usize) -> Result<RgbImage> {
        self.resize(width, height, Filter::Bilinear)
    }

    /// PIL's `Image.resize((width, height), Image.BICUBIC)`: CLIP's preprocessing.
    pub fn resize_bicubic(&self, width: usize, height: usize) -> Result<RgbImage> {
        self.resize(width, height, Filter::Bicubic)
    }

    fn resize(&self, width: usize, height: usize, filter: Filter) -> Result<RgbImage> {
        if width == 0 || height == 0 {
            return Err(Error::Internal(format!("cannot resize a {}x{} image to {height}x{width}", self.height, self.width)));
        }
        if width == self.width && height == self.height {
            return Ok(self.clone());
        }
        let vert = Coeffs::new(self.height, height, filter);
        // Only the input rows the vertical pass reads go through the horizontal pass.
        let first = vert.bounds[0].0;
        let last = vert.bounds.last().map(|&(lo, n)| lo + n).unwrap_or(first);
        let (src, src_w, row0) = if width != self.width {
            let horiz = Coeffs::new(self.width, width, filter);
            (resample_rows(&self.data, self.width, first..last, &horiz), width, first)
        } else {
            (self.data.clone(), self.width, 0)
        };
        let data = if height != self.height { resample_cols(&src, src_w, row0, &vert) } else { src };
        Ok(RgbImage { width, height, data })
    }

    /// ToTensor + Normalize(0.5, 0.5): [3, height, width] f32 in [-1, 1], computed as torch does
    /// in f32 (`v / 255`, then `(x - 0.5) / 0.5`).
    pub fn to_tensor_data(&self) -> Vec<f32> {
        let plane = self.width * self.height;
        let mut out = vec![0.0f32; 3 * plane];
        for (p, px) in self.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + p] = (px[c] as f32 / 255.0 - 0.5) / 0.5;
            }
        }
        out
    }
}

/// The 8-bit RGB PIL's `convert("RGB")` gives for each decoded layout (module docs).
fn to_rgb_like_pil(img: DynamicImage) -> RgbImage {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let gray = |v: u8| [v, v, v];
    let data: Vec<u8> = match img {
        DynamicImage::ImageRgb8(b) => b.into_raw(),
        DynamicImage::ImageRgba8(b) => b.into_raw().chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        DynamicImage::ImageLuma8(b) => b.into_raw().into_iter().flat_map(gray).collect(),
        DynamicImage::ImageLumaA8(b) => b.into_raw().chunks_exact(2).flat_map(|p| gray(p[0])).collect(),
        DynamicImage::ImageLuma16(b) => b.into_raw().into_iter().flat_map(|v| gray(v.min(255) as u8)).collect(),
        DynamicImage::ImageLumaA16(b) => b.into_raw().chunks_exact(2).flat_map(|p| gray((p[0] >> 8) as u8)).collect(),
        DynamicImage::ImageRgb16(b) => b.into_raw().into_iter().map(|v| (v >> 8) as u8).collect(),
        DynamicImage::ImageRgba16(b) => {
            b.into_raw().chunks_exact(4).flat_map(|p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8]).collect()
        }
        other => other.to_rgb8().into_raw(),
    };
    RgbImage { width, height, data }
}

/// Fixed-point fraction bits of PIL's 8-bit resampling (`PRECISION_BITS`: 32 - 8 - 2).
const PRECISION_BITS: u32 = 22;

/// PIL's resampling filters (libImaging/Resample.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    /// The triangle, support 1.
    Bilinear,
    /// Keys' cubic with a = -0.5, support 2.
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    /// PIL's `bilinear_filter` / `bicubic_filter`.
    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear if x < 1.0 => 1.0 - x,
            Filter::Bicubic if x < 1.0 => {
                const A: f64 = -0.5;
                ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
            }
            Filter::Bicubic if x < 2.0 => {
                const A: f64 = -0.5;
                (((x - 5.0) * x + 8.0) * x - 4.0) * A
            }
            _ => 0.0,
        }
    }
}

/// The filter taps of one resampling pass (PIL's `precompute_coeffs` + `normalize_coeffs_8bpc`
/// for box (0, in_size)): output pixel o reads inputs `bounds[o].0 ..+ bounds[o].1` with
/// fixed-point weights `weights[o * ksize ..]`.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

impl Coeffs {
    fn new(in_size: usize, out_size: usize, filter: Filter) -> Coeffs {
        // PIL takes the box edges as f32; exact for any real image size.
        let scale = (in_size as f32 as f64) / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
        let ss = 1.0 / filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * ksize];
        let mut w = vec![0.0f64; ksize];
        for (o, taps) in weights.chunks_exact_mut(ksize).enumerate() {
            let center = (o as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero; values below 0 are clamped anyway.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = hi.saturating_sub(lo);
            let mut total = 0.0;
            for (x, wx) in w.iter_mut().enumerate().take(n) {
                *wx = filter.weight(((x + lo) as f64 - center + 0.5) * ss);
                total += *wx;
            }
            for (x, tap) in taps.iter_mut().enumerate().take(n) {
                let v = if total != 0.0 { w[x] / total } else { w[x] };
                // PIL rounds half away from zero: (int)(±0.5 + v * 2^22), C's truncation.
                let scaled = v * (1u32 << PRECISION_BITS) as f64;
                *tap = (if v < 0.0 { scaled - 0.5 } else { scaled + 0.5 }) as i32;
            }
            bounds.push((lo, n));
        }
        Coeffs { ksize, bounds, weights }
    }
}

/// A fixed-point sum back to uint8 (PIL's `clip8`): shift out the fraction, clamp to 0..255.
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Horizontal pass over input rows `rows` of an interleaved RGB image `src` of width `w_in`:
/// [rows.len(), out_w, 3].
fn resample_rows(src: &[u8], w_in: usize, rows: std::ops::Range<usize>, c: &Coeffs) -> Vec<u8> {
    let out_w = c.bounds.len();
    let mut out = vec![0u8; rows.len() * out_w * 3];
    for (oy, y) in rows.enumerate() {
        let row = &src[y * w_in * 3..(y + 1) * w_in * 3];
        for (ox, &(lo, n)) in c.bounds.iter().enumerate() {
            let k = &c.weights[ox * c.ksize..ox * c.ksize + n];
            let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
            for (x, &kx) in k.iter().enumerate() {
                let p = (lo + x) * 3;
                for ch in 0..3 {
                    acc[ch] += row[p + ch] as i32 * kx;
                }
            }
            for ch in 0..3 {
                out[(oy * out_w + ox) * 3 + ch] = clip8(acc[ch]);
            }
        }
    }
    out
}

/// Vertical pass: `src` holds rows `row0..` of an image of width `w`; [out_h, w, 3].
fn resample_cols(src: &[u8], w: usize, row0: usize, c: &Coeffs) -> Vec<u8> {
    let out_h = c.bounds.len();
    let mut out = vec![0u8; out_h * w * 3];
    let mut acc = vec![0i32; w * 3];
    for (oy, &(lo, n)) in c.bounds.iter().enumerate() {
        acc.fill(1 << (PRECISION_BITS - 1));
        for (y, &ky) in c.weights[oy * c.ksize..oy * c.ksize + n].iter().enumerate() {
            let row = &src[(lo + y - row0) * w * 3..(lo + y - row0 + 1) * w * 3];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += v as i32 * ky;
            }
        }
        for (o, &a) in out[oy * w * 3..(oy + 1) * w * 3].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// torchvision's `Resize(size)` output (width, height) for a `width`x`height` image: the short
/// side becomes `size`, the long side `int(size * long / short)` (`_compute_resized_output_size`).
pub fn resize_short_side_dims(width: usize, height: usize, size: usize) -> (usize, usize) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    let new_long = ((size * long) as f64 / short as f64) as usize;
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// Python's `int(round(d / 2.0))` for d >= 0: halves round to even, as CenterCrop does.
fn half_round_even(d: usize) -> usize {
    let a = d / 2;
    if d % 2 == 1 && a % 2 == 1 {
        a + 1
    } else {
        a
    }
}

/// torchvision's `CenterCrop((height, width))` of an image at least that large.
pub fn center_crop(img: &RgbImage, height: usize, width: usize) -> Result<RgbImage> {
    if height > img.height || width > img.width {
        return Err(Error::Internal(format!("center crop {height}x{width} is larger than the {}x{} image", img.height, img.width)));
    }
    img.crop(half_round_even(img.height - height), half_round_even(img.width - width), height, width)
}

/// A crop rectangle (torchvision's `(i, j, h, w)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

/// Counter-based draws for one image: value k of a stream is `rng::bits(seed, k)`.
struct Draws {
    seed: u64,
    next: u64,
}

impl Draws {
    fn bits(&mut self) -> u64 {
        self.next += 1;
        rng::bits(self.seed, self.next - 1)
    }

    /// Uniform in [lo, hi) with 53 bits.
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.bits() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0))
    }

    /// Uniform integer in [0, n) (n >= 1), by multiply-shift.
    fn below(&mut self, n: usize) -> usize {
        ((self.bits() as u128 * n as u128) >> 64) as usize
    }
}

/// `RandomResizedCrop.get_params` for a `width`x`height` image: up to 10 tries of an area
/// fraction in `scale` and a log-uniform aspect ratio in `ratio` (w/h), sides rounded half to
/// even as Python's `round`, the first that fits placed uniformly; else the fallback central
/// crop clamped to the ratio range. Draws come from stream `seed` (crop sampling, counters 0..).
pub fn random_resized_crop_box(width: usize, height: usize, scale: (f64, f64), ratio: (f64, f64), seed: u64) -> CropBox {
    let mut d = Draws { seed, next: 0 };
    let area = (width * height) as f64;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * d.uniform(scale.0, scale.1);
        let aspect = d.uniform(log_lo, log_hi).exp();
        let w = (target * aspect).sqrt().round_ties_even() as usize;
        let h = (target / aspect).sqrt().round_ties_even() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = d.below(height - h + 1);
            let left = d.below(width - w + 1);
            return CropBox { top, left, height: h, width: w };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (lo, hi) = (ratio.0.min(ratio.1), ratio.0.max(ratio.1));
    let (w, h) = if in_ratio < lo {
        (width, ((width as f64 / lo).round_ties_even() as usize).clamp(1, height))
    } else if in_ratio > hi {
        (((height as f64 * hi).round_ties_even() as usize).clamp(1, width), height)
    } else {
        (width, height)
    };
    CropBox { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w }
}

/// How an image becomes a model input: [3, R, R] f32 in [-1, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Preprocess {
    /// `Resize(R)` + `CenterCrop(R)` (the reference's evaluation and feature-extraction path).
    Eval { resolution: usize },
    /// Diff-C's training augmentation: `RandomResizedCrop(R, scale=(0.8, 1.0), ratio=(3/4,
    /// 4/3))` + `RandomHorizontalFlip(0.5)`. Image i of epoch e draws from
    /// `rng::derive(seed, [e, i, 0])` (crop) and `rng::derive(seed, [e, i, 1])` (flip).
    Augment { resolution: usize, seed: u64, epoch: u64 },
}

impl Preprocess {
    pub fn resolution(&self) -> usize {
        match *self {
            Preprocess::Eval { resolution } | Preprocess::Augment { resolution, .. } => resolution,
        }
    }

    /// The preprocessed image before ToTensor: R x R RGB. `index` (the image's place in the
    /// dataset) seeds the augmentation.
    pub fn apply_rgb(&self, img: &RgbImage, index: usize) -> Result<RgbImage> {
        match *self {
            Preprocess::Eval { resolution } => {
                if resolution == 0 {
                    return Err(Error::BadOption("--resolution must be at least 1".into()));
                }
                let (w, h) = resize_short_side_dims(img.width, img.height, resolution);
                center_crop(&img.resize_bilinear(w, h)?, resolution, resolution)
            }
            Preprocess::Augment { resolution, seed, epoch } => {
                if resolution == 0 {
                    return Err(Error::BadOption("--resolution must be at least 1".into()));
                }
                let crop_seed = rng::derive(seed, &[epoch, index as u64, 0]);
                let b = random_resized_crop_box(img.width, img.height, (0.8, 1.0), (3.0 / 4.0, 4.0 / 3.0), crop_seed);
                let out = img.crop(b.top, b.left, b.height, b.width)?.resize_bilinear(resolution, resolution)?;
                let flip = rng::uniform(rng::derive(seed, &[epoch, index as u64, 1]), 0) < 0.5;
                Ok(if flip { out.hflip() } else { out })
            }
        }
    }

    /// [3, R, R] f32 in [-1, 1].
    pub fn apply(&self, img: &RgbImage, index: usize) -> Result<Vec<f32>> {
        Ok(self.apply_rgb(img, index)?.to_tensor_data())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn center_offsets_round_half_to_even() {
        assert_eq!([0, 1, 2, 3, 4, 5, 6, 7].map(half_round_even), [0, 0, 1, 2, 2, 2, 3, 4]);
    }

    #[test]
    fn short_side_dims_truncate() {
        assert_eq!(resize_short_side_dims(500, 375, 256), (341, 256));
        assert_eq!(resize_short_side_dims(375, 500, 256), (256, 341));
        assert_eq!(resize_short_side_dims(7, 7, 3), (3, 3));
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(100, 7), (7, 100), (33, 33), (512, 511)] {
            let c = Coeffs::new(i, o, Filter::Bilinear);
            for (ox, &(lo, n)) in c.bounds.iter().enumerate() {
                assert!(lo + n <= i);
                let s: i64 = c.weights[ox * c.ksize..ox * c.ksize + n].iter().map(|&w| w as i64).sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= n as i64, "{i}->{o} at {ox}: {s}");
            }
        }
    }

    #[test]
    fn crop_box_fallback_for_extreme_aspect() {
        // 100x5 cannot hold a 0.8-1.0 area crop with ratio <= 4/3: the fallback keeps the
        // full height and the widest allowed width, centred.
        let b = random_resized_crop_box(100, 5, (0.8, 1.0), (0.75, 4.0 / 3.0), 3);
        assert_eq!(b, CropBox { top: 0, left: 46, height: 5, width: 7 });
        let b = random_resized_crop_box(5, 100, (0.8, 1.0), (0.75, 4.0 / 3.0), 3);
        assert_eq!(b, CropBox { top: 46, left: 0, height: 7, width: 5 });
    }

    #[test]
    fn crop_boxes_respect_scale_and_ratio() {
        for s in 0..500 {
            let b = random_resized_crop_box(64, 48, (0.8, 1.0), (0.75, 4.0 / 3.0), s);
            assert!(b.top + b.height <= 48 && b.left + b.width <= 64);
            let frac = (b.width * b.height) as f64 / (64.0 * 48.0);
            // Rounding each side moves the area by at most about (w + h) / 2 pixels.
            assert!((0.77..=1.0).contains(&frac), "seed {s}: {b:?}");
            let r = b.width as f64 / b.height as f64;
            assert!((0.72..=1.37).contains(&r), "seed {s}: {b:?}");
        }
    }
}
