//! The demo's labelled images, drawn in code: every combination of a shape, a colour and a
//! background (3 x 3 x 2), each drawn several times with seeded jitter in position, size,
//! rotation, tint and pixel noise so that no two images are alike.
//!
//! Written as an ImageFolder whose class is the shape (`<dir>/<shape>/<colour>_<background>_NNN.png`)
//! with `manifest.csv` beside the class folders: `path,label,split,shape,colour,background`, one
//! row per image in ImageFolder order (so row i is image i of both), `label` the shape, and a
//! seeded train/test split stratified by combination. `revelio extract --data <dir>/manifest.csv`
//! reads the split from it; the other factors are there for the purity check.

use crate::features::store::ImageEntry;
use crate::progress::Progress;
use crate::{rng, Error, Result};
use image::{ImageFormat, Rgb, RgbImage};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The class factor, in ImageFolder (sorted) order.
pub const SHAPES: [&str; 3] = ["circle", "square", "triangle"];
/// Colours of the shape, and their RGB in [0, 1].
pub const COLOURS: [(&str, [f32; 3]); 3] = [("blue", [0.15, 0.3, 0.9]), ("green", [0.15, 0.72, 0.2]), ("red", [0.88, 0.15, 0.12])];
/// `plain`: a flat grey; `stripes`: diagonal dark and light stripes.
pub const BACKGROUNDS: [&str; 2] = ["plain", "stripes"];
/// The factors as the manifest names its columns.
pub const FACTORS: [&str; 3] = ["shape", "colour", "background"];
/// The manifest file inside the dataset folder.
pub const MANIFEST: &str = "manifest.csv";

/// How many images and how large.
#[derive(Debug, Clone, Copy)]
pub struct DatasetSpec {
    /// Images per (shape, colour, background) combination.
    pub per_combination: usize,
    /// Of which this many go to the test split.
    pub test_per_combination: usize,
    /// Side of the square images, in pixels.
    pub size: usize,
    pub seed: u64,
}

/// One image: where it is (relative to the dataset folder), its factors (indices into
/// [`SHAPES`], [`COLOURS`], [`BACKGROUNDS`]) and its split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub path: String,
    pub factors: [usize; 3],
    pub split: &'static str,
}

/// A dataset written to disk.
#[derive(Debug, Clone)]
pub struct SyntheticDataset {
    pub dir: PathBuf,
    pub samples: Vec<Sample>,
}

impl SyntheticDataset {
    /// `<dir>/manifest.csv`.
    pub fn manifest(&self) -> PathBuf {
        self.dir.join(MANIFEST)
    }

    /// The value names of factor `f` (0 shape, 1 colour, 2 background).
    pub fn factor_values(f: usize) -> Vec<&'static str> {
        match f {
            0 => SHAPES.to_vec(),
            1 => COLOURS.iter().map(|c| c.0).collect(),
            _ => BACKGROUNDS.to_vec(),
        }
    }

    /// The sample of a store image (matched by path), for stores made from this dataset.
    pub fn by_entry(&self, e: &ImageEntry) -> Option<&Sample> {
        self.samples.iter().find(|s| s.path == e.path)
    }
}

/// Seeded jitter of one image: value `i` of its own stream in [lo, hi).
fn jitter(seed: u64, i: u64, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng::uniform(seed, i)
}

/// Whether the point (x, y), relative to the shape's centre and already rotated into the
/// shape's frame, lies inside a shape of radius r.
fn inside(shape: usize, x: f32, y: f32, r: f32) -> bool {
    match shape {
        // circle
        0 => x * x + y * y <= r * r,
        // square, of about the circle's area
        1 => x.abs() <= 0.89 * r && y.abs() <= 0.89 * r,
        // equilateral triangle pointing up, circumradius 1.4 r: inside all three edges
        _ => {
            let rc = 1.4 * r;
            let (s, c) = (3f32.sqrt() / 2.0, 0.5);
            // the edge normals point down, up-right and up-left; each edge is rc / 2 from the centre
            y <= c * rc && (-s * x - c * y) <= c * rc && (s * x - c * y) <= c * rc
        }
    }
}

/// Draws one image: the shape (anti-aliased by 4x4 supersampling) over its background.
pub fn render(factors: [usize; 3], size: usize, seed: u64) -> RgbImage {
    let [shape, colour, background] = factors;
    let n = size as f32;
    let cx = n / 2.0 + jitter(seed, 0, -0.06, 0.06) * n;
    let cy = n / 2.0 + jitter(seed, 1, -0.06, 0.06) * n;
    let r = jitter(seed, 2, 0.25, 0.3) * n;
    let angle = jitter(seed, 3, -0.15, 0.15);
    let (sin, cos) = angle.sin_cos();
    let mut fg = COLOURS[colour].1;
    for (k, v) in fg.iter_mut().enumerate() {
        *v = (*v + jitter(seed, 4 + k as u64, -0.08, 0.08)).clamp(0.0, 1.0);
    }
    let grey = jitter(seed, 7, 0.4, 0.55);
    let phase = jitter(seed, 8, 0.0, 1.0);
    let period = n / 6.0;
    let noise_seed = rng::derive(seed, &[1]);
    let bg_at = |x: f32, y: f32| -> f32 {
        match background {
            0 => grey,
            _ => {
                let band = ((x + y) / period + phase).floor() as i64;
                if band.rem_euclid(2) == 0 {
                    0.2
                } else {
                    0.75
                }
            }
        }
    };
    const SS: usize = 4;
    RgbImage::from_fn(size as u32, size as u32, |px, py| {
        let mut acc = [0f32; 3];
        for sy in 0..SS {
            for sx in 0..SS {
                let x = px as f32 + (sx as f32 + 0.5) / SS as f32;
                let y = py as f32 + (sy as f32 + 0.5) / SS as f32;
                let (dx, dy) = (x - cx, y - cy);
                let (rx, ry) = (cos * dx + sin * dy, -sin * dx + cos * dy);
                if inside(shape, rx, ry, r) {
                    acc.iter_mut().zip(fg).for_each(|(a, f)| *a += f);
                } else {
                    let b = bg_at(x, y);
                    acc.iter_mut().for_each(|a| *a += b);
                }
            }
        }
        let pixel = (py as u64) * size as u64 + px as u64;
        let mut out = [0u8; 3];
        for (k, o) in out.iter_mut().enumerate() {
            let noise = 0.03 * rng::normal(noise_seed, 3 * pixel + k as u64);
            *o = ((acc[k] / (SS * SS) as f32 + noise).clamp(0.0, 1.0) * 255.0).round() as u8;
        }
        Rgb(out)
    })
}

/// The samples of `spec`, in ImageFolder order (shape folder, then file name), with their
/// splits: in each combination, `test_per_combination` images chosen by a seeded shuffle go to
/// `test`.
pub fn plan(spec: &DatasetSpec) -> Vec<Sample> {
    let mut out = Vec::new();
    for (s, shape) in SHAPES.iter().enumerate() {
        for (c, (colour, _)) in COLOURS.iter().enumerate() {
            for (b, background) in BACKGROUNDS.iter().enumerate() {
                let combo = rng::derive(spec.seed, &[s as u64, c as u64, b as u64, 1]);
                let mut keys: Vec<(u64, usize)> = (0..spec.per_combination).map(|i| (rng::bits(combo, i as u64), i)).collect();
                keys.sort_unstable();
                let test: Vec<usize> = keys.iter().take(spec.test_per_combination).map(|k| k.1).collect();
                for i in 0..spec.per_combination {
                    out.push(Sample {
                        path: format!("{shape}/{colour}_{background}_{i:03}.png"),
                        factors: [s, c, b],
                        split: if test.contains(&i) { "test" } else { "train" },
                    });
                }
            }
        }
    }
    out
}

/// The manifest text: a header and one row per sample.
pub fn manifest_csv(samples: &[Sample]) -> String {
    let mut s = String::from("path,label,split,shape,colour,background\n");
    for x in samples {
        let [a, b, c] = x.factors;
        s.push_str(&format!("{},{},{},{},{},{}\n", x.path, SHAPES[a], x.split, SHAPES[a], COLOURS[b].0, BACKGROUNDS[c]));
    }
    s
}

/// Draws and writes the dataset into `dir` (which must not hold another dataset).
pub fn write_dataset(dir: &Path, spec: &DatasetSpec) -> Result<SyntheticDataset> {
    if spec.per_combination == 0 || spec.test_per_combination == 0 || spec.test_per_combination >= spec.per_combination {
        return Err(Error::BadOption(format!(
            "demo dataset: {} images per combination with {} for test: need at least one of each",
            spec.per_combination, spec.test_per_combination
        )));
    }
    if spec.size < 16 {
        return Err(Error::BadOption(format!("demo dataset: images of {} px are too small to draw a shape (16 px at least)", spec.size)));
    }
    for shape in SHAPES {
        std::fs::create_dir_all(dir.join(shape)).map_err(|e| Error::io(dir.join(shape), e))?;
    }
    let samples = plan(spec);
    let bar = std::sync::Mutex::new(Progress::new("demo images", samples.len() as u64, "img"));
    samples.par_iter().enumerate().try_for_each(|(i, s)| -> Result<()> {
        let img = render(s.factors, spec.size, rng::derive(spec.seed, &[i as u64, 2]));
        let path = dir.join(&s.path);
        img.save_with_format(&path, ImageFormat::Png).map_err(|e| Error::Internal(format!("{}: writing the PNG failed: {e}", path.display())))?;
        bar.lock().expect("progress lock").inc(1);
        Ok(())
    })?;
    bar.into_inner().expect("progress lock").finish();
    crate::io::write_atomic(&dir.join(MANIFEST), manifest_csv(&samples).as_bytes())?;
    Ok(SyntheticDataset { dir: dir.to_path_buf(), samples })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_is_stratified_and_in_imagefolder_order() {
        let spec = DatasetSpec { per_combination: 5, test_per_combination: 2, size: 32, seed: 3 };
        let s = plan(&spec);
        assert_eq!(s.len(), 18 * 5);
        let mut sorted = s.clone();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(sorted, s);
        for combo in s.chunks(5) {
            assert_eq!(combo.iter().filter(|x| x.split == "test").count(), 2);
        }
    }

    #[test]
    fn shapes_cover_about_the_same_area_and_images_differ() {
        let area = |shape| (0..400).filter(|i| inside(shape, (i % 20) as f32 - 9.5, (i / 20) as f32 - 9.5, 7.0)).count() as f64;
        let circle = area(0);
        for shape in 1..3 {
            let ratio = area(shape) / circle;
            assert!((0.6..1.4).contains(&ratio), "shape {shape}: area ratio {ratio}");
        }
        assert_ne!(render([0, 0, 0], 32, 1), render([0, 0, 0], 32, 2));
        let img = render([2, 2, 1], 32, 5);
        assert_eq!((img.width(), img.height()), (32, 32));
    }
}
