//! The images `revelio generate` writes: decoded samples as 8-bit RGB PNGs that carry their
//! generation settings in text chunks (UTF-8 `iTXt`, read by PIL's `Image.text` and most
//! viewers), written atomically, and a contact sheet of the first ones.
//!
//! Legend: B = images, H, W = pixels.

use super::image::RgbImage;
use crate::io::write_atomic;
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::path::Path;

/// images: [B, 3, H, W] f32 in [0, 1] (on the host) -> B RGB images, each value * 255 rounded
/// half to even (diffusers' `numpy_to_pil`: `(images * 255).round().astype("uint8")`).
pub fn to_rgb(images: &Tensor) -> Result<Vec<RgbImage>> {
    let (b, c, h, w) = images.dims4("to_rgb")?;
    if c != 3 {
        return Err(Error::BadInput(format!("images {} must have 3 channels (RGB)", images.shape())));
    }
    let v = images.to_f32_vec()?;
    let plane = h * w;
    (0..b)
        .map(|i| {
            let img = &v[i * 3 * plane..(i + 1) * 3 * plane];
            let data = (0..plane).flat_map(|p| (0..3).map(move |ch| (img[ch * plane + p] * 255.0).round_ties_even().clamp(0.0, 255.0) as u8));
            RgbImage::new(w, h, data.collect())
        })
        .collect()
}

/// The PNG bytes of `img` with `text` (keyword, value) chunks.
pub fn encode(img: &RgbImage, text: &[(&str, String)]) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let err = |e: png::EncodingError| Error::Internal(format!("PNG encoding: {e}"));
    let mut enc = png::Encoder::new(&mut bytes, img.width() as u32, img.height() as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    for (k, v) in text {
        enc.add_itxt_chunk(k.to_string(), v.clone()).map_err(err)?;
    }
    let mut w = enc.write_header().map_err(err)?;
    w.write_image_data(img.pixels()).map_err(err)?;
    w.finish().map_err(err)?;
    Ok(bytes)
}

/// Writes `img` with its text chunks to `path`, atomically.
pub fn write(path: &Path, img: &RgbImage, text: &[(&str, String)]) -> Result<()> {
    write_atomic(path, &encode(img, text)?)
}

/// A grid of `images` (up to `cell` pixels on their long side, 2-pixel gaps, near-square)
/// written to `path`.
pub fn contact_sheet(images: &[RgbImage], cell: usize, path: &Path) -> Result<()> {
    let first = images.first().ok_or_else(|| Error::Internal("a contact sheet of no images".into()))?;
    let scale = (cell as f64 / first.width().max(first.height()) as f64).min(1.0);
    let (tw, th) = (((first.width() as f64 * scale).round() as usize).max(1), ((first.height() as f64 * scale).round() as usize).max(1));
    let cols = (images.len() as f64).sqrt().ceil() as usize;
    let rows = images.len().div_ceil(cols);
    const GAP: usize = 2;
    let (w, h) = (cols * (tw + GAP) + GAP, rows * (th + GAP) + GAP);
    let mut data = vec![0u8; w * h * 3];
    for (i, img) in images.iter().enumerate() {
        let t = img.resize_bilinear(tw, th)?;
        let (x0, y0) = (GAP + (i % cols) * (tw + GAP), GAP + (i / cols) * (th + GAP));
        for y in 0..th {
            let dst = ((y0 + y) * w + x0) * 3;
            data[dst..dst + tw * 3].copy_from_slice(&t.pixels()[y * tw * 3..(y + 1) * tw * 3]);
        }
    }
    write(path, &RgbImage::new(w, h, data)?, &[])
}
