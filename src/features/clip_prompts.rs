//! CLIP-chosen prompts (`revelio extract --prompt-from-clip`), the reference's `from_CLIP`
//! conditioning (shared/spec/revelio.md section 3; `diffc_image_classification/feature_models/
//! clip_infer.py`): CLIP scores every class prompt (each template filled with each class name)
//! against the image, and the best one is the text Stable Diffusion is conditioned on. No label
//! is read, so the features stay label-free (unlike `--prompt` with `{label}`).
//!
//! - Prompts: for each class name in the dataset's order, each template in the file's order
//!   (`{}` or `{label}` is the class name); ties go to the first.
//! - Images: CLIPImageProcessor's steps (transformers 5.25, `CLIPImageProcessorPil`; OpenAI
//!   CLIP's `preprocess` is the same up to the crop offset): resize the shortest edge to `size`
//!   with PIL's bicubic filter (the long side `int(size * long / short)`), center crop (offsets
//!   `(H - h) // 2`, `(W - w) // 2`), rescale by 1/255, normalize with CLIP's mean and std;
//!   read from `preprocessor_config.json` when the folder has one. Pixel values equal
//!   `CLIPImageProcessorPil`'s (tests/clip_model.rs: six images scaled down and up, max |diff|
//!   0; the bound is f32 rounding, 1e-5). Two known differences: images are decoded as PIL's
//!   `convert("RGB")` (as OpenAI CLIP and the reference do), whereas transformers composites a
//!   PIL image with a transparency colour over white first; and transformers' default
//!   torchvision backend resizes with torchvision's bicubic, not measured here (no torchvision
//!   in the reference environment).
//! - Choice: argmax over prompts of cos(image_embeds, text_embeds) (the logit scale does not
//!   change it).

use super::dataset::Dataset;
use super::image::{resize_short_side_dims, RgbImage};
use super::store::ImageEntry;
use crate::models::clip::{normalize_rows, ClipModel};
use crate::tensor::{DType, Device, Tensor};
use crate::{Error, Result};
use rayon::prelude::*;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// OpenAI CLIP's pixel mean and std (transformers' `OPENAI_CLIP_MEAN`, `OPENAI_CLIP_STD`).
const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// The template used when no file is given.
pub const DEFAULT_TEMPLATE: &str = "a photo of a {}.";

/// CLIPImageProcessor's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipPreprocess {
    /// The shortest edge after resizing.
    pub size: usize,
    /// (height, width) of the center crop.
    pub crop: (usize, usize),
    pub rescale_factor: f64,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl ClipPreprocess {
    /// transformers' defaults for a model of input `image_size`.
    pub fn defaults(image_size: usize) -> ClipPreprocess {
        ClipPreprocess { size: image_size, crop: (image_size, image_size), rescale_factor: 1.0 / 255.0, mean: CLIP_MEAN, std: CLIP_STD }
    }

    /// `preprocessor_config.json` (keys absent take the defaults); errors name the file and key
    /// for settings that would compute something else.
    pub fn from_file(path: &Path, image_size: usize) -> Result<ClipPreprocess> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let map: Map<String, Value> =
            serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not a JSON object of image processor settings: {e}")))?;
        ClipPreprocess::from_map(&map, image_size).map_err(|m| Error::format(path, m))
    }

    fn from_map(map: &Map<String, Value>, image_size: usize) -> std::result::Result<ClipPreprocess, String> {
        let mut p = ClipPreprocess::defaults(image_size);
        for flag in ["do_resize", "do_center_crop", "do_rescale", "do_normalize", "do_convert_rgb"] {
            if let Some(v) = map.get(flag) {
                if v.as_bool() != Some(true) {
                    return Err(format!("`{flag}` = {v} is not supported (revelio runs CLIPImageProcessor's default steps)"));
                }
            }
        }
        if let Some(v) = map.get("resample") {
            if v.as_u64() != Some(3) {
                return Err(format!("`resample` = {v} is not supported (3, bicubic, is)"));
            }
        }
        let dim = |v: &Value, key: &str| v.get(key).and_then(Value::as_u64).map(|x| x as usize).filter(|&x| x > 0);
        if let Some(size) = map.get("size") {
            p.size = match size {
                Value::Number(_) => dim(&serde_json::json!({ "s": size }), "s"),
                _ => dim(size, "shortest_edge"),
            }
            .ok_or_else(|| format!("`size` = {size}: expected {{\"shortest_edge\": N}} with N >= 1"))?;
        }
        if let Some(crop) = map.get("crop_size") {
            p.crop = match crop {
                Value::Number(_) => dim(&serde_json::json!({ "s": crop }), "s").map(|s| (s, s)),
                _ => dim(crop, "height").zip(dim(crop, "width")),
            }
            .ok_or_else(|| format!("`crop_size` = {crop}: expected {{\"height\": H, \"width\": W}}"))?;
        }
        if let Some(v) = map.get("rescale_factor") {
            p.rescale_factor = v.as_f64().filter(|x| x.is_finite() && *x > 0.0).ok_or_else(|| format!("`rescale_factor` = {v}: expected a positive number"))?;
        }
        let triple = |key: &str, v: &Value| -> std::result::Result<[f32; 3], String> {
            let a: Vec<f32> = v.as_array().map(|a| a.iter().filter_map(Value::as_f64).map(|x| x as f32).collect()).unwrap_or_default();
            <[f32; 3]>::try_from(a).map_err(|_| format!("`{key}` = {v}: expected three numbers"))
        };
        if let Some(v) = map.get("image_mean") {
            p.mean = triple("image_mean", v)?;
        }
        if let Some(v) = map.get("image_std") {
            p.std = triple("image_std", v)?;
            if p.std.contains(&0.0) {
                return Err(format!("`image_std` = {v}: must not hold 0"));
            }
        }
        if p.crop != (image_size, image_size) {
            return Err(format!("`crop_size` {}x{} does not give the model's {image_size}x{image_size} input", p.crop.0, p.crop.1));
        }
        if p.crop.0 > p.size || p.crop.1 > p.size {
            return Err(format!("`crop_size` {}x{} is larger than the resized shortest edge {}", p.crop.0, p.crop.1, p.size));
        }
        Ok(p)
    }

    /// An image -> pixel values [3, crop h, crop w] (see the module docs).
    pub fn apply(&self, img: &RgbImage) -> Result<Vec<f32>> {
        let (w, h) = resize_short_side_dims(img.width(), img.height(), self.size);
        let r = img.resize_bicubic(w, h)?;
        let (ch, cw) = self.crop;
        let c = r.crop((h - ch) / 2, (w - cw) / 2, ch, cw)?;
        let plane = ch * cw;
        let mut out = vec![0.0f32; 3 * plane];
        for (p, px) in c.pixels().chunks_exact(3).enumerate() {
            for k in 0..3 {
                // transformers: float64 rescale cast to float32, then (x - mean) / std in float32.
                let x = (px[k] as f64 * self.rescale_factor) as f32;
                out[k * plane + p] = (x - self.mean[k]) / self.std[k];
            }
        }
        Ok(out)
    }
}

/// The class prompts of `templates` (each with one `{}` or `{label}`) and `class_names`:
/// class-major, templates in order.
pub fn class_prompts(templates: &[String], class_names: &[String]) -> Vec<String> {
    class_names
        .iter()
        .flat_map(|c| templates.iter().map(move |t| t.replacen("{label}", c, 1).replacen("{}", c, 1)))
        .collect()
}

/// Reads a templates file: one template per line, each with exactly one `{}` or `{label}` (the
/// class name); blank lines and lines starting with `#` are skipped.
pub fn read_templates(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        check_template(t).map_err(|m| Error::format(path, format!("line {}: {m}", n + 1)))?;
        out.push(t.to_string());
    }
    if out.is_empty() {
        return Err(Error::format(path, "no templates (one per line, e.g. \"A photo of a {}, a type of pet.\")"));
    }
    Ok(out)
}

/// One placeholder, `{}` or `{label}`, and no other.
pub fn check_template(t: &str) -> std::result::Result<(), String> {
    let n = t.matches("{}").count() + t.matches("{label}").count();
    if n != 1 {
        return Err(format!("template {t:?} must hold exactly one {{}} or {{label}} (the class name), it holds {n}"));
    }
    Ok(())
}

/// CLIP, its preprocessing and the encoded class prompts, ready to choose.
pub struct PromptChooser {
    model: ClipModel,
    preprocess: ClipPreprocess,
    prompts: Vec<String>,
    /// [P, E], normalized
    text_embeds: Tensor,
    /// The CLIP folder, for the manifest.
    pub dir: PathBuf,
}

impl PromptChooser {
    /// Loads the CLIPModel folder `dir` and encodes every class prompt.
    pub fn new(dir: &Path, templates: &[String], class_names: &[String], device: &Device) -> Result<PromptChooser> {
        if class_names.is_empty() {
            return Err(Error::BadOption("--prompt-from-clip needs the dataset's class names (it has only ids)".into()));
        }
        let model = ClipModel::load(dir, DType::F32, device)?;
        let image_size = model.vision_model.config().image_size;
        let pre_path = dir.join("preprocessor_config.json");
        let preprocess = if pre_path.exists() { ClipPreprocess::from_file(&pre_path, image_size)? } else { ClipPreprocess::defaults(image_size) };
        let prompts = class_prompts(templates, class_names);
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let text_embeds = normalize_rows(&model.text_features(&model.tokenize(&refs)?)?)?;
        Ok(PromptChooser { model, preprocess, prompts, text_embeds, dir: dir.to_path_buf() })
    }

    pub fn prompts(&self) -> &[String] {
        &self.prompts
    }

    /// Pixel values of `images` as a batch [N, 3, R, R].
    pub fn pixel_values(&self, images: &[RgbImage]) -> Result<Tensor> {
        let (h, w) = self.preprocess.crop;
        let mut data = Vec::with_capacity(images.len() * 3 * h * w);
        for img in images {
            data.extend(self.preprocess.apply(img)?);
        }
        Tensor::from_vec(data, [images.len(), 3, h, w], &Device::Cpu)
    }

    /// The index (into `prompts`) of the best prompt of each image.
    pub fn choose(&self, images: &[RgbImage]) -> Result<Vec<usize>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let (_, features) = self.model.image_features(&self.pixel_values(images)?, false)?;
        let sim = crate::ops::matmul_t(&normalize_rows(&features)?, &self.text_embeds, false, true)?;
        let p = self.prompts.len();
        let v = sim.to_f32_vec()?;
        Ok(v.chunks_exact(p).map(|row| (0..p).fold(0, |b, j| if row[j] > row[b] { j } else { b })).collect())
    }
}

/// `ds`'s entries with the chosen prompt of each image in `range` (batches of `batch` images,
/// decoded in parallel); unreadable images get none (extraction lists them as failures).
/// `known`: prompts already recorded for these images (a resumed run), reused as they are.
pub fn choose_prompts(
    chooser: &PromptChooser,
    ds: &Dataset,
    range: std::ops::Range<usize>,
    batch: usize,
    known: Option<&[ImageEntry]>,
) -> Result<Vec<ImageEntry>> {
    let mut entries = ds.entries().to_vec();
    if let Some(known) = known.filter(|k| k.len() == entries.len() && range.clone().all(|i| k[i].prompt.is_some())) {
        for i in range {
            entries[i].prompt = known[i].prompt.clone();
        }
        return Ok(entries);
    }
    let idx: Vec<usize> = range.collect();
    for chunk in idx.chunks(batch.max(1)) {
        let decoded: Vec<(usize, RgbImage)> = chunk.par_iter().filter_map(|&i| ds.load_image(i).ok().map(|img| (i, img))).collect();
        let images: Vec<RgbImage> = decoded.iter().map(|(_, img)| img.clone()).collect();
        let best = chooser.choose(&images)?;
        for ((i, _), b) in decoded.iter().zip(best) {
            entries[*i].prompt = Some(chooser.prompts[b].clone());
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_class_major() {
        let t = vec!["a {}.".to_string(), "{label} here".to_string()];
        let c = vec!["cat".to_string(), "dog".to_string()];
        assert_eq!(class_prompts(&t, &c), ["a cat.", "cat here", "a dog.", "dog here"]);
    }

    #[test]
    fn templates_need_one_placeholder() {
        assert!(check_template("a photo of a {}.").is_ok());
        assert!(check_template("a {label}").is_ok());
        assert!(check_template("a photo").unwrap_err().contains("holds 0"));
        assert!(check_template("{} and {label}").unwrap_err().contains("holds 2"));
    }

    #[test]
    fn preprocessor_config_is_checked() {
        let m = |v: Value| ClipPreprocess::from_map(v.as_object().unwrap(), 224);
        assert_eq!(m(serde_json::json!({})).unwrap(), ClipPreprocess::defaults(224));
        assert!(m(serde_json::json!({"resample": 2})).unwrap_err().contains("resample"));
        assert!(m(serde_json::json!({"do_center_crop": false})).unwrap_err().contains("do_center_crop"));
        assert!(m(serde_json::json!({"crop_size": {"height": 200, "width": 200}})).unwrap_err().contains("224x224"));
        assert!(m(serde_json::json!({"image_mean": [0.5, 0.5]})).unwrap_err().contains("image_mean"));
        assert_eq!(m(serde_json::json!({"size": {"shortest_edge": 256}})).unwrap().size, 256);
    }
}
