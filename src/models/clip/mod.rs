//! CLIP, the text encoder of Stable Diffusion: its BPE tokenizer (and the Unicode data the
//! tokenizer's normalisation needs).

mod nfc;
pub mod tokenizer;
mod unicode_tables;

pub use tokenizer::{ClipTokenizer, Flavor};
