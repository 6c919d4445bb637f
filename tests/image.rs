//! Image decoding and preprocessing against PIL + torchvision (tools/reference/
//! make_image_fixtures.py): PIL's `convert("RGB")` for every layout, torchvision's Resize +
//! CenterCrop + ToTensor + Normalize at two resolutions, and resized_crop + hflip.
//!
//! Tolerances: from PIL's decoded pixels our preprocessing is exact (PIL's fixed-point
//! resampling is reproduced bit for bit). Decoding is exact for PNG (8- and 16-bit, palette,
//! alpha) and WebP (lossless and lossy). JPEG is decoded by zune-jpeg, not PIL's libjpeg-turbo,
//! whose IDCT and chroma upsampling round differently: measured max 3 levels (4:2:0 colour), 1
//! (grayscale, CMYK), mean 0.38 levels; we allow 4 levels and a mean of 0.5.
//!
//! The fixtures come from the reference's Pillow (9.5.0, pinned in Revelio's environment); see
//! the script for why not Pillow 13.

mod common;

use revelio::features::image::{Preprocess, RgbImage};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images")
}

/// Every fixture image: (name, file).
fn images() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(dir().join("src"))
        .expect("tests/fixtures/images/src: run tools/reference/make_image_fixtures.py")
        .map(|e| {
            let p = e.unwrap().path();
            (p.file_stem().unwrap().to_string_lossy().into_owned(), p)
        })
        .collect();
    v.sort();
    assert!(v.len() >= 13, "expected the 13 fixture images, found {}", v.len());
    v
}

/// PIL's decoding of image `name` (saved as an 8-bit RGB PNG by the script).
fn pil_decoded(name: &str) -> RgbImage {
    RgbImage::open(&dir().join("decoded").join(format!("{name}.png"))).unwrap()
}

fn is_jpeg(file: &std::path::Path) -> bool {
    file.extension().unwrap().to_string_lossy().to_lowercase() == "jpg"
}

#[test]
fn decoding_matches_pil_convert_rgb() {
    for (name, file) in images() {
        let ours = RgbImage::open(&file).unwrap();
        let pil = pil_decoded(&name);
        assert_eq!((ours.width(), ours.height()), (pil.width(), pil.height()), "{name}: size");
        let diffs: Vec<u8> = ours.pixels().iter().zip(pil.pixels()).map(|(a, b)| a.abs_diff(*b)).collect();
        let max = *diffs.iter().max().unwrap();
        let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
        // JPEG: a few levels per pixel, a small mean (module docs); the rest exact.
        let (max_ok, mean_ok) = if is_jpeg(&file) { (4, 0.5) } else { (0, 0.0) };
        assert!(max <= max_ok && mean <= mean_ok, "{name}: max |diff| {max} (allowed {max_ok}), mean {mean:.3} (allowed {mean_ok})");
    }
}

#[test]
fn preprocessing_is_exact_from_pil_pixels() {
    let f = common::fixture("images/expected.safetensors");
    for (name, _) in images() {
        let img = pil_decoded(&name);
        for r in [12usize, 20] {
            let want = common::fixture_tensor(&f, &format!("{name}.r{r}")).to_f32_vec().unwrap();
            let got = Preprocess::Eval { resolution: r }.apply(&img, 0).unwrap();
            assert_eq!(got.len(), want.len(), "{name} at {r}");
            let bad = got.iter().zip(&want).position(|(a, b)| a != b);
            assert!(bad.is_none(), "{name} at {r}: first difference at {:?}: got {}, expected {}", bad, got[bad.unwrap()], want[bad.unwrap()]);
        }
    }
}

#[test]
fn preprocessing_from_files_matches_torchvision() {
    let f = common::fixture("images/expected.safetensors");
    for (name, file) in images() {
        let img = RgbImage::open(&file).unwrap();
        for r in [12usize, 20] {
            let want = common::fixture_tensor(&f, &format!("{name}.r{r}")).to_f32_vec().unwrap();
            let got = Preprocess::Eval { resolution: r }.apply(&img, 0).unwrap();
            let max = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            // Exact where decoding is; JPEG decoding differences (<= 4 levels) stay within 4 levels
            // under resampling (non-negative weights summing to 1): 4 levels = 8/255 in [-1, 1].
            let allowed = if is_jpeg(&file) { 8.0 / 255.0 + 1e-6 } else { 0.0 };
            assert!(max <= allowed, "{name} at {r}: max |diff| {max} > {allowed}");
        }
    }
}

#[test]
fn resized_crop_and_flip_match_torchvision() {
    let f = common::fixture("images/expected.safetensors");
    // CROPS and CROP_SIZE of make_image_fixtures.py: (top, left, height, width, flip).
    type Crop = (usize, usize, usize, usize, bool);
    let crops: &[(&str, &[Crop])] =
        &[("rgb_odd", &[(3, 5, 20, 31, false), (0, 0, 31, 47, true)]), ("rgb_jpeg", &[(4, 2, 25, 19, true)])];
    for (name, list) in crops {
        let img = pil_decoded(name);
        for (k, &(top, left, h, w, flip)) in list.iter().enumerate() {
            let mut out = img.crop(top, left, h, w).unwrap().resize_bilinear(16, 16).unwrap();
            if flip {
                out = out.hflip();
            }
            let want = common::fixture_tensor(&f, &format!("{name}.crop{k}")).to_f32_vec().unwrap();
            let got = out.to_tensor_data();
            let bad = got.iter().zip(&want).position(|(a, b)| a != b);
            assert!(bad.is_none(), "{name} crop {k}: first difference at {bad:?} of {}", got.len());
        }
    }
}

#[test]
fn augmentation_is_a_function_of_seed_epoch_and_index() {
    let img = pil_decoded("big_down");
    let aug = |seed, epoch, index| Preprocess::Augment { resolution: 16, seed, epoch }.apply(&img, index).unwrap();
    assert_eq!(aug(1, 0, 5), aug(1, 0, 5));
    assert_ne!(aug(1, 0, 5), aug(1, 1, 5));
    assert_ne!(aug(1, 0, 5), aug(1, 0, 6));
    assert_ne!(aug(1, 0, 5), aug(2, 0, 5));
    let v = aug(3, 0, 0);
    assert_eq!(v.len(), 3 * 16 * 16);
    assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
    // Over many images about half are flipped: compare each with its unflipped twin.
    let mut flips = 0;
    for i in 0..200 {
        let p = Preprocess::Augment { resolution: 16, seed: 9, epoch: 0 };
        let a = p.apply_rgb(&img, i).unwrap();
        let b = revelio::features::image::random_resized_crop_box(
            img.width(),
            img.height(),
            (0.8, 1.0),
            (0.75, 4.0 / 3.0),
            revelio::rng::derive(9, &[0, i as u64, 0]),
        );
        let plain = img.crop(b.top, b.left, b.height, b.width).unwrap().resize_bilinear(16, 16).unwrap();
        if a != plain {
            assert_eq!(a, plain.hflip(), "image {i}: neither the crop nor its mirror");
            flips += 1;
        }
    }
    assert!((70..=130).contains(&flips), "{flips} of 200 flipped");
}

#[test]
fn unreadable_images_are_errors_not_panics() {
    for bytes in [&b""[..], b"not an image at all", &[0xff, 0xd8, 0xff, 0xe0, 0, 16, b'J', b'F']] {
        assert!(RgbImage::decode(bytes).is_err());
    }
    // A truncated PNG.
    let png = std::fs::read(dir().join("src/rgb_odd.png")).unwrap();
    let err = RgbImage::decode(&png[..png.len() / 2]).unwrap_err().to_string();
    assert!(err.contains("decode"), "{err}");
    let missing = dir().join("src/missing.png");
    let err = RgbImage::open(&missing).unwrap_err().to_string();
    assert!(err.contains("missing.png"), "{err}");
}
