//! CLIP, the text encoder of Stable Diffusion: the text model (CLIPTextModel) and its config,
//! its BPE tokenizer.

pub mod config;
pub mod text_model;
pub mod tokenizer;

pub use config::ClipTextConfig;
pub use text_model::{ClipSkip, ClipTextModel, ClipTextOutput};
pub use tokenizer::{ClipTokenizer, Flavor};
