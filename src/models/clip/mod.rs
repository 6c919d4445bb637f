//! CLIP: the text encoder of Stable Diffusion (CLIPTextModel) and its BPE tokenizer, the vision
//! tower (CLIPVisionTransformer), and CLIPModel joining both (projections, logit scale), with
//! their configs.

pub mod config;
pub mod encoder;
pub mod model;
pub mod model_config;
pub mod text_model;
pub mod tokenizer;
pub mod vision_model;

pub use config::ClipTextConfig;
pub use model::{normalize_rows, ClipModel};
pub use model_config::{ClipConfig, ClipVisionConfig};
pub use text_model::{ClipSkip, ClipTextModel, ClipTextOutput};
pub use tokenizer::{ClipTokenizer, Flavor};
pub use vision_model::{ClipVisionModel, ClipVisionOutput};
