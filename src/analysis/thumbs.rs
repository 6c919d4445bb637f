//! Thumbnails: each image a report shows is read once (through the dataset the store was
//! extracted from, any format, parquet included; or by path with `--image-root` or when the
//! dataset cannot be reopened), resized on its shorter side and centre-cropped to a square (as
//! the features were extracted), and written as `thumbs/NNNNNNN.jpg`, shared by every latent
//! that shows it. An image that cannot be read gets a placeholder tile at the same path, and is
//! listed with its path and why, so no page shows a broken image.

use crate::features::image::RgbImage as Decoded;
use crate::features::{dataset, FeatureStore};
use crate::io::write_atomic_unsynced;
use crate::{Error, Result};
use image::codecs::jpeg::JpegEncoder;
use image::{imageops, Rgb, RgbImage};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// JPEG quality of the thumbnails.
const QUALITY: u8 = 85;
/// Images read and encoded per batch (bounds the decoded images held at once).
const BATCH: usize = 64;

/// An image that could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct Missing {
    pub image: usize,
    pub path: String,
    pub error: String,
}

/// What writing the thumbnails found: the unreadable images, and the thumbnails asked to be
/// kept in memory (for the grids), placeholders included.
#[derive(Debug, Default)]
pub struct Thumbs {
    pub missing: Vec<Missing>,
    pub kept: HashMap<usize, RgbImage>,
}

/// The thumbnail of store image `i`, relative to the report folder.
pub fn thumb_path(i: usize) -> String {
    format!("thumbs/{i:07}.jpg")
}

/// A square thumbnail of `img`.
pub fn thumbnail(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let s = w.min(h).max(1);
    let (nw, nh) = ((w as u64 * size as u64 / s as u64).max(size as u64) as u32, (h as u64 * size as u64 / s as u64).max(size as u64) as u32);
    let resized = imageops::resize(img, nw, nh, imageops::FilterType::Triangle);
    imageops::crop_imm(&resized, (nw - size) / 2, (nh - size) / 2, size, size).to_image()
}

/// The tile of an image that could not be read: grey with a darker cross.
pub fn placeholder(size: u32) -> RgbImage {
    RgbImage::from_fn(size, size, |x, y| {
        let on_cross = x.abs_diff(y) <= size / 32 || (x + y).abs_diff(size - 1) <= size / 32;
        if on_cross {
            Rgb([140, 140, 140])
        } else {
            Rgb([200, 200, 200])
        }
    })
}

/// Where the images come from.
enum Source {
    Dataset(dataset::Dataset),
    Paths(Option<PathBuf>),
}

/// The file of a manifest image path.
pub fn resolve_image(store: &FeatureStore, root: Option<&Path>, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let setting = store.manifest().settings.get("image_root").and_then(|v| v.as_str()).map(PathBuf::from);
    match root.map(Path::to_path_buf).or(setting) {
        Some(r) => r.join(p),
        None => p.to_path_buf(),
    }
}

fn decode(bytes: &[u8], path: &str) -> Result<RgbImage> {
    let img = Decoded::decode(bytes).map_err(|e| Error::format(path, e.to_string()))?;
    RgbImage::from_raw(img.width() as u32, img.height() as u32, img.pixels().to_vec()).ok_or_else(|| Error::Internal(format!("{path}: pixel buffer size")))
}

fn jpeg(img: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, QUALITY).encode_image(img).map_err(|e| Error::Internal(format!("{}: JPEG encoding failed: {e}", path.display())))?;
    write_atomic_unsynced(path, &bytes)
}

/// Writes the thumbnails of `images` into `dir/thumbs/`, `size` px square; keeps those in
/// `keep` in memory.
pub fn write(store: &FeatureStore, image_root: Option<&Path>, images: &[usize], keep: &HashSet<usize>, size: u32, dir: &Path) -> Result<Thumbs> {
    let source = match image_root {
        Some(r) => Source::Paths(Some(r.to_path_buf())),
        None => match dataset::reopen(store.manifest()) {
            Ok(ds) => Source::Dataset(ds),
            Err(e) => {
                eprintln!("note: images are read by path, not through the dataset: {e}");
                Source::Paths(None)
            }
        },
    };
    let entries = &store.manifest().images;
    let mut out = Thumbs::default();
    for batch in images.chunks(BATCH) {
        let bytes: Vec<Result<Vec<u8>>> = match &source {
            Source::Dataset(ds) => ds.read_many(batch),
            Source::Paths(root) => batch
                .par_iter()
                .map(|&i| {
                    let p = resolve_image(store, root.as_deref(), &entries[i].path);
                    std::fs::read(&p).map_err(|e| Error::io(p, e))
                })
                .collect(),
        };
        let done: Vec<(usize, RgbImage, Option<Missing>)> = batch
            .par_iter()
            .zip(bytes)
            .map(|(&i, b)| {
                let path = &entries[i].path;
                let (tile, missing) = match b.and_then(|b| decode(&b, path)) {
                    Ok(img) => (thumbnail(&img, size), None),
                    Err(e) => (placeholder(size), Some(Missing { image: i, path: path.clone(), error: e.to_string() })),
                };
                jpeg(&tile, &dir.join(thumb_path(i))).map(|()| (i, tile, missing))
            })
            .collect::<Result<_>>()?;
        for (i, tile, missing) in done {
            out.missing.extend(missing);
            if keep.contains(&i) {
                out.kept.insert(i, tile);
            }
        }
    }
    Ok(out)
}
