//! CLIP, the text encoder of Stable Diffusion: the text model (CLIPTextModel) and its config,
//! its BPE tokenizer (and the Unicode data the tokenizer's normalisation needs).

pub mod config;
mod nfc;
pub mod text_model;
pub mod tokenizer;
mod unicode_tables;

pub use config::ClipTextConfig;
pub use text_model::{ClipSkip, ClipTextModel, ClipTextOutput};
pub use tokenizer::{ClipTokenizer, Flavor};
