//! What the denoiser is conditioned on when features are taken from real images (`revelio
//! extract`, online Diff-C): the U-Net's prompt per image (the empty one, as the reference, a
//! template, or each image's caption) and DiT's class per image (the null class, as the
//! reference, or its label). The pipeline (src/models/pipeline.rs) encodes the prompts.

use crate::features::store::ImageEntry;
use crate::models::pipeline::Pipeline;
use crate::tensor::{Device, Tensor};
use crate::Result;

/// What the U-Net is conditioned on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditioning {
    /// The empty prompt, encoded once (the reference).
    Empty,
    /// A prompt; `{label}` is replaced by the image's class name.
    Prompt(String),
    /// Each image's caption from the dataset.
    Captions,
    /// The class prompt CLIP (a CLIPModel folder) scores best for each image, from these
    /// templates (src/features/clip_prompts.rs); recorded per image in the manifest.
    Clip { model: std::path::PathBuf, templates: Vec<String> },
}

impl Conditioning {
    pub fn name(&self) -> String {
        match self {
            Conditioning::Empty => "empty".into(),
            Conditioning::Prompt(p) => format!("prompt:{p}"),
            Conditioning::Captions => "captions".into(),
            Conditioning::Clip { templates, .. } => format!("clip:{}", templates.join(" | ")),
        }
    }

    /// The prompt of each image.
    pub fn texts(&self, entries: &[&ImageEntry], class_names: &[String]) -> Vec<String> {
        match self {
            Conditioning::Empty => vec![String::new(); entries.len()],
            Conditioning::Prompt(p) => entries
                .iter()
                .map(|e| {
                    let name = usize::try_from(e.label).ok().and_then(|l| class_names.get(l)).cloned().unwrap_or_else(|| e.label.to_string());
                    p.replace("{label}", &name)
                })
                .collect(),
            Conditioning::Captions => entries.iter().map(|e| e.caption.clone().unwrap_or_default()).collect(),
            Conditioning::Clip { .. } => entries.iter().map(|e| e.prompt.clone().unwrap_or_default()).collect(),
        }
    }

    /// The U-Net's encoder_hidden_states for a batch of images: [B, 77, D].
    pub fn encode(&self, pipe: &mut Pipeline, entries: &[&ImageEntry], class_names: &[String]) -> Result<Tensor> {
        let texts = self.texts(entries, class_names);
        pipe.encode_prompts(&texts.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

/// DiT's class input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DitClass {
    /// The null class (num_classes), as the reference.
    Null,
    /// Each image's label.
    Label,
}

impl DitClass {
    /// The class labels of a batch of images: i64 [B] on the host; `null` is DiT's null class.
    pub fn labels(self, entries: &[&ImageEntry], null: usize) -> Result<Tensor> {
        let y: Vec<i64> = entries.iter().map(|e| if self == DitClass::Label { e.label } else { null as i64 }).collect();
        Tensor::from_vec(y, [entries.len()], &Device::Cpu)
    }
}
