//! PNG grids of a latent's top images (for papers; the explorer pages draw the same): the
//! square thumbnails laid out in rows; where the store keeps positions, a heat map of the
//! latent's activation over the image's positions is blended in red (each map scaled by the
//! largest activation over the latent's top images, bilinear upsampling).

use crate::Result;
use image::{imageops, Rgb, RgbImage};
use std::path::Path;

/// One tile: a square thumbnail (a placeholder for an unreadable image), and optionally its
/// activation map [h, w] (row-major).
#[derive(Debug, Clone)]
pub struct Tile<'a> {
    pub image: &'a RgbImage,
    pub heat: Option<(&'a [f32], usize, usize)>,
}

const GAP: u32 = 2;

/// Bilinear sample of map [h, w] at pixel (px, py) of a size x size image (pixel centres).
fn sample(map: &[f32], h: usize, w: usize, px: u32, py: u32, size: u32) -> f32 {
    let fx = ((px as f32 + 0.5) * w as f32 / size as f32 - 0.5).clamp(0.0, (w - 1) as f32);
    let fy = ((py as f32 + 0.5) * h as f32 / size as f32 - 0.5).clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (ax, ay) = (fx - x0 as f32, fy - y0 as f32);
    let at = |x: usize, y: usize| map[y * w + x];
    (at(x0, y0) * (1.0 - ax) + at(x1, y0) * ax) * (1.0 - ay) + (at(x0, y1) * (1.0 - ax) + at(x1, y1) * ax) * ay
}

/// Blends map / scale (clamped to [0, 1]) into img as red with opacity up to 0.6.
fn overlay(img: &mut RgbImage, map: &[f32], h: usize, w: usize, scale: f32) {
    if h == 0 || w == 0 || scale <= 0.0 {
        return;
    }
    let size = img.width();
    for py in 0..img.height() {
        for px in 0..size {
            let a = 0.6 * (sample(map, h, w, px, py, size) / scale).clamp(0.0, 1.0);
            let p = img.get_pixel_mut(px, py);
            let blend = |c: u8, t: f32| (c as f32 * (1.0 - a) + t * a).round() as u8;
            *p = Rgb([blend(p[0], 255.0), blend(p[1], 0.0), blend(p[2], 0.0)]);
        }
    }
}

/// Renders `tiles` (`cols` per row, thumbnails of `size` px) to the PNG `out`.
pub fn render(tiles: &[Tile], size: u32, cols: u32, out: &Path) -> Result<()> {
    let cols = cols.max(1);
    let rows = (tiles.len() as u32).div_ceil(cols).max(1);
    let (w, h) = (cols * size + (cols + 1) * GAP, rows * size + (rows + 1) * GAP);
    let mut canvas = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let scale = tiles
        .iter()
        .filter_map(|t| t.heat.as_ref())
        .flat_map(|(m, _, _)| m.iter().copied())
        .fold(0.0f32, f32::max);
    for (i, t) in tiles.iter().enumerate() {
        let mut tile = t.image.clone();
        if let Some((map, mh, mw)) = t.heat {
            overlay(&mut tile, map, mh, mw, scale);
        }
        let (c, r) = (i as u32 % cols, i as u32 / cols);
        imageops::replace(&mut canvas, &tile, (GAP + c * (size + GAP)) as i64, (GAP + r * (size + GAP)) as i64);
    }
    super::plot::save_png(&canvas, out)
}
